"""Loading a saved state into an object built with other settings: refuse, keep the new ones, or take the saved.

A resumed run that silently took the checkpoint's ``patience`` (or silently dropped the checkpoint because the
patience changed) does something other than what its code says. Every ``load_state_dict`` of the library
compares the settings a state was saved with against the constructor's and, by default, refuses a difference.
"""

from __future__ import annotations

from typing import Any

#: What ``load_state_dict(..., settings=)`` does when a saved setting differs from the constructor's:
#: ``"same"`` raises (the default), ``"new"`` keeps the constructor's, ``"saved"`` takes the state's.
SETTINGS_ON_LOAD = ("same", "new", "saved")


def check_settings_choice(settings: str) -> None:
    if settings not in SETTINGS_ON_LOAD:
        raise ValueError(f"settings must be one of {SETTINGS_ON_LOAD}, got {settings!r}: 'same' refuses a state "
                         "saved with other settings, 'new' keeps the constructor's, 'saved' takes the state's")


def differences(saved: dict[str, Any], ours: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Setting name -> (saved value, constructor's value), for those that differ."""
    return {name: (saved[name], value) for name, value in ours.items() if name in saved and saved[name] != value}


def reconcile(saved: dict[str, Any], ours: dict[str, Any], settings: str, owner: str) -> dict[str, tuple[Any, Any]]:
    """The settings that differ; raises under ``settings="same"`` with what to do."""
    check_settings_choice(settings)
    changed = differences(saved, ours)
    if changed and settings == "same":
        listed = ", ".join(f"{name}={old!r} (saved) vs {new!r} (now)" for name, (old, new) in changed.items())
        raise ValueError(f"this {owner} state was saved with other settings: {listed}. Build the {owner} with the "
                         "saved settings, or call load_state_dict(state, settings='new') to keep the new ones "
                         "(settings='saved' takes the saved ones)")
    return changed


def describe_changes(changed: dict[str, tuple[Any, Any]]) -> str:
    return ", ".join(f"{name} {old!r} -> {new!r}" for name, (old, new) in changed.items())
