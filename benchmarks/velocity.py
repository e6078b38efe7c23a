"""Cost of one velocity measurement: streamed VelocityMonitor vs stored activations (spec section 2).

For CIFAR ResNet-32 at 32x32 and torchvision ResNet-50 at 224x224 it measures the time and the
peak extra memory of one measurement with ``neve.VelocityMonitor`` (a snapshot of the weights,
aux batches streamed through the model and the snapshot) and with
``tests.velocity_reference.StoredActivationsVelocity`` (every neuron's outputs over the whole
aux set kept from the previous epoch, the authors' way), and compares them with the time of one
training epoch. It ends with a table of ratios, each checked against its target:

  * memory of VelocityMonitor at |D_aux| = 400 over |D_aux| = 100            target <= 1.1
  * memory of stored activations over VelocityMonitor at |D_aux| = 100       target >= 10
  * time of one VelocityMonitor measurement (|D_aux| = 100) over one training epoch
    (ResNet-32: 50,000 images, SGD, batch 100; target <= 1%; ResNet-50: ImageNet-100's
    126,689 images, informative only), the epoch extrapolated from a few timed batches

Time. One process per model alternates, round after round, a few timed SGD steps, one
VelocityMonitor measurement and one stored-activations measurement, and reports the median of
each, so that load from other processes on a shared machine hits all three alike. The model
really trains between measurements. With --device cpu the stored approach for ResNet-50 is
timed at |D_aux| = 16 and scaled linearly to 100 (time is proportional to the forward passes).

Memory. Every configuration runs in a fresh subprocess. "Extra memory" is the peak during
[construction + one measurement] minus what was in use just before construction (model and
aux tensor allocated, kernels warmed up by one forward pass). For VelocityMonitor it covers the
monitor's reference snapshot and the streamed measurement; for the stored approach it covers
the stored activations of the previous epoch (recorded at construction) and the current pass.
  * CUDA: torch.cuda.reset_peak_memory_stats(), then max_memory_allocated() - memory_allocated()
    before. Stored activations are kept on the GPU so that they are counted.
  * CPU: peak resident set size. Right before construction, free heap memory is returned to the
    kernel (malloc_trim), the kernel's high-water mark is reset by writing "5" to
    /proc/self/clear_refs and VmRSS is read from /proc/self/status; after the measurement VmHWM
    (the new high-water mark) is read; extra = VmHWM - VmRSS(before). These runs pin glibc's
    mmap threshold at 128 KiB (MALLOC_MMAP_THRESHOLD_), so that every freed tensor goes back to
    the kernel at once and RSS follows the live tensors, like CUDA's max_memory_allocated (with
    glibc's defaults freed memory stays cached in the heap and counts in RSS: --default-malloc
    shows those numbers). The pinned threshold makes allocations slow, hence separate timing runs.
On a CPU machine the stored approach for ResNet-50 at |D_aux| = 100 needs ~18 GB (2 x 100 images
x ~89 MB of hooked activations each), so with --device cpu it is measured at a few small
|D_aux|, shown to be linear, and extrapolated to 100 (marked "extrapolated"). --device cuda
measures it for real.

    python -m benchmarks.velocity --device cpu --quick     # ~2-3 minutes on 2 idle CPU cores
    python -m benchmarks.velocity --device cuda            # on a GPU, everything measured
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Any

import torch

MODELS = {  # name: (image size, classes, training images in one epoch, SGD weight decay)
    "resnet32": (32, 10, 50_000, 5e-4),
    "resnet50": (224, 100, 126_689, 1e-4),
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=["cpu", "cuda"],
                        default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--quick", action="store_true",
                        help="fewer configurations, rounds and timed steps (a few minutes on a 2-core CPU)")
    parser.add_argument("--batch-size", type=int, default=16,
                        help="aux batch size of both methods (default 16, VelocityMonitor's default)")
    parser.add_argument("--default-malloc", action="store_true",
                        help="CPU memory with glibc's default caching instead of the pinned mmap threshold")
    parser.add_argument("--json", help="also write every measurement and ratio to this file")
    parser.add_argument("--worker", help=argparse.SUPPRESS)  # internal: run one configuration
    return parser.parse_args(argv)


# ------------------------------------------------------------------------------------- in the worker


def build_model(name: str) -> torch.nn.Module:
    from experiments.models import create_model

    size, classes, _, _ = MODELS[name]
    return create_model(name, num_classes=classes, image_size=size)


def _proc_status_kb(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


class PeakMemory:
    """Extra peak memory (bytes) between start() and stop(): CUDA allocator stats or CPU VmHWM."""

    def __init__(self, device: torch.device) -> None:
        self.device = device

    def start(self) -> None:
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(self.device)
            self.before = torch.cuda.memory_allocated(self.device)
        else:
            ctypes.CDLL("libc.so.6").malloc_trim(0)  # free heap memory back to the kernel: VmRSS = in use
            with open("/proc/self/clear_refs", "w") as clear_refs:
                clear_refs.write("5")  # reset the peak RSS (VmHWM) to the current RSS
            self.before = _proc_status_kb("VmRSS") * 1024

    def stop(self) -> int:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            return torch.cuda.max_memory_allocated(self.device) - self.before
        return _proc_status_kb("VmHWM") * 1024 - self.before


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def make_velocity(method: str, model: torch.nn.Module, aux: torch.Tensor, batch_size: int,
                  device: torch.device) -> Any:
    from neve.velocity import VelocityMonitor
    from tests.velocity_reference import StoredActivationsVelocity

    if method == "monitor":
        return VelocityMonitor(model, aux, batch_size=batch_size)
    return StoredActivationsVelocity(model, aux, batch_size=batch_size, storage_device=device)


def worker_memory(config: dict[str, Any]) -> dict[str, Any]:
    """Peak extra memory of constructing one method and taking one measurement."""
    from neve.aux_sets import gaussian_aux

    device = torch.device(config["device"])
    torch.manual_seed(0)
    size = MODELS[config["model"]][0]
    model = build_model(config["model"]).to(device)
    aux = gaussian_aux(config["n_aux"], (3, size, size))
    batch_size = config["batch_size"]
    model.eval()
    with torch.no_grad():  # warm up kernels and allocator outside the measured region
        model(aux[:batch_size].to(device))
    model.train()

    memory = PeakMemory(device)
    memory.start()
    velocity = make_velocity(config["method"], model, aux, batch_size, device)
    with torch.no_grad():  # stands for an epoch of training: a small change of every weight
        for p in model.parameters():
            p.add_(torch.randn_like(p), alpha=1e-3)
    start = time.perf_counter()
    report = velocity.measure()
    sync(device)
    seconds = time.perf_counter() - start
    return {"extra_bytes": memory.stop(), "measure_s_in_memory_run": seconds,
            "model_velocity": report.model_velocity}


def worker_timing(config: dict[str, Any]) -> dict[str, Any]:
    """Rounds of [SGD steps, one monitor measurement, one stored measurement]; medians of each."""
    from neve.aux_sets import gaussian_aux

    device = torch.device(config["device"])
    torch.manual_seed(0)
    size, classes, _, weight_decay = MODELS[config["model"]]
    model = build_model(config["model"]).to(device).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=weight_decay)
    batch = config["train_batch"]
    x = torch.randn(batch, 3, size, size, device=device)
    y = torch.randint(0, classes, (batch,), device=device)

    def train_step() -> None:
        optimizer.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()

    def timed(action: Any) -> float:
        sync(device)
        start = time.perf_counter()
        action()
        sync(device)
        return time.perf_counter() - start

    train_step()  # warm-up
    with torch.no_grad():
        model.eval()
        model(torch.randn(config["batch_size"], 3, size, size, device=device))
        model.train()
    methods = {name: make_velocity(name, model, gaussian_aux(n, (3, size, size)), config["batch_size"], device)
               for name, n in (("monitor", config["n_aux_monitor"]), ("stored", config["n_aux_stored"]))}
    if config["warmup_round"]:
        for velocity in methods.values():
            velocity.measure()
    times: dict[str, list[float]] = {"step": [], "monitor": [], "stored": []}
    for _ in range(config["rounds"]):
        for _ in range(config["train_steps"]):
            times["step"].append(timed(train_step))
        for name, velocity in methods.items():
            times[name].append(timed(velocity.measure))
    return {f"{name}_s": statistics.median(values) for name, values in times.items()} | {"all": times}


def worker(config: dict[str, Any]) -> None:
    result = worker_timing(config) if config["kind"] == "timing" else worker_memory(config)
    print("RESULT " + json.dumps(result), flush=True)


# ---------------------------------------------------------------------------------------- the driver


def run_config(config: dict[str, Any], pin_malloc: bool = False) -> dict[str, Any]:
    """One configuration in a fresh process; ``pin_malloc``: glibc returns every freed tensor at once."""
    env = dict(os.environ)
    if pin_malloc:
        env.update(MALLOC_MMAP_THRESHOLD_="131072", MALLOC_TRIM_THRESHOLD_="131072")
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = os.pathsep.join([repo, *filter(None, [env.get("PYTHONPATH")])])
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--worker", json.dumps(config)],
                          capture_output=True, text=True, env=env)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"configuration {config} failed:\n{proc.stdout}\n{proc.stderr}")
    result = json.loads(lines[-1][len("RESULT "):])
    result["wall_s"] = time.perf_counter() - started
    return result


def mb(n_bytes: float) -> str:
    return f"{n_bytes / 2**20:8.1f} MiB"


def linear_fit(xs: list[float], ys: list[float]) -> tuple[float, float]:
    """Least-squares line y = a + b x."""
    mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
    b = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True))
    b /= sum((x - mean_x) ** 2 for x in xs)
    return mean_y - b * mean_x, b


def main(args: argparse.Namespace) -> dict[str, Any]:
    device, quick, bs = args.device, args.quick, args.batch_size
    if device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device here")
    if device == "cpu" and not os.path.exists("/proc/self/clear_refs"):
        raise SystemExit("--device cpu needs Linux's /proc/self/clear_refs to measure peak memory")
    pin = device == "cpu" and not args.default_malloc
    machine = torch.cuda.get_device_name() if device == "cuda" else f"{os.cpu_count()} cores"
    print(f"device: {device} ({machine}), torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"aux batch size {bs}, {'quick' if quick else 'full'} mode"
          f"{', CPU memory with glibc mmap threshold pinned' if pin else ''}", flush=True)
    results: dict[str, Any] = {"device": device, "quick": quick, "batch_size": bs, "runs": {}}
    ratios: list[tuple[str, str, float, str, bool | None]] = []

    def add_ratio(name: str, model: str, value: float, target: str) -> None:
        """target: "<= 1.1", ">= 10", "<= 1%" or "info"."""
        ok = None
        if target != "info":
            op, bound_text = target.split()
            bound = float(bound_text.rstrip("%")) / (100 if bound_text.endswith("%") else 1)
            ok = value <= bound if op == "<=" else value >= bound
        ratios.append((name, model, value, target, ok))

    def memory(model: str, method: str, n_aux: int) -> float:
        config = {"kind": "memory", "model": model, "method": method, "n_aux": n_aux, "device": device,
                  "batch_size": bs}
        result = run_config(config, pin_malloc=pin)
        results["runs"][f"{model}/memory/{method}/{n_aux}"] = result
        label = "VelocityMonitor" if method == "monitor" else "stored activations"
        print(f"  memory  {label:18s} |D_aux| = {n_aux:3d}: {mb(result['extra_bytes'])} extra "
              f"(V = {result['model_velocity']:.2e})", flush=True)
        return result["extra_bytes"]

    def timing(model: str, n_stored: int) -> dict[str, Any]:
        train_size = MODELS[model][2]
        if model == "resnet32":
            batch, steps, rounds, warm = 100, (2 if quick else 3), (2 if quick else 5), True
        elif device == "cuda":
            batch, steps, rounds, warm = 128, 3, (2 if quick else 5), True
        else:  # ResNet-50 on a CPU: a few small batches, one round
            batch, steps, rounds, warm = 8, 2, (1 if quick else 2), False
        config = {"kind": "timing", "model": model, "device": device, "batch_size": bs, "train_batch": batch,
                  "train_steps": steps, "rounds": rounds, "warmup_round": warm, "n_aux_monitor": 100,
                  "n_aux_stored": n_stored}
        result = run_config(config)
        result["epoch_s"] = result["step_s"] / batch * train_size
        results["runs"][f"{model}/timing"] = result
        print(f"  time    training: {result['step_s']:.3f} s per SGD step of {batch} images -> one epoch of "
              f"{train_size:,} images ~ {result['epoch_s']:.0f} s (extrapolated; median of "
              f"{rounds * steps} steps)", flush=True)
        print(f"  time    VelocityMonitor    |D_aux| = 100: {result['monitor_s']:7.2f} s per measurement "
              f"(median of {rounds})", flush=True)
        print(f"  time    stored activations |D_aux| = {n_stored:3d}: {result['stored_s']:7.2f} s per measurement"
              + ("" if n_stored == 100 else f" -> ~{result['stored_s'] * 100 / n_stored:.1f} s at |D_aux| = 100 "
                 "(extrapolated, linear)"), flush=True)
        return result

    # ResNet-32 at 32x32: everything measured
    print("\nResNet-32 (CIFAR, 32x32)", flush=True)
    times = timing("resnet32", 100)
    m100, m400 = memory("resnet32", "monitor", 100), memory("resnet32", "monitor", 400)
    s100 = memory("resnet32", "stored", 100)
    add_ratio("monitor memory, |D_aux| 400 / 100", "ResNet-32", m400 / m100, "<= 1.1")
    add_ratio("stored / monitor memory, |D_aux| 100", "ResNet-32", s100 / m100, ">= 10")
    add_ratio("monitor time / epoch of 50,000", "ResNet-32", times["monitor_s"] / times["epoch_s"], "<= 1%")

    # ResNet-50 at 224x224
    print("\nResNet-50 (ImageNet-100, 224x224)", flush=True)
    times = timing("resnet50", 100 if device == "cuda" else 16)
    m100 = memory("resnet50", "monitor", 100)
    if device == "cuda" or not quick:
        m400 = memory("resnet50", "monitor", 400)
        add_ratio("monitor memory, |D_aux| 400 / 100", "ResNet-50", m400 / m100, "<= 1.1")
    else:
        print("  memory  VelocityMonitor    |D_aux| = 400: skipped with --quick on the CPU", flush=True)
    if device == "cuda":
        s100, note = memory("resnet50", "stored", 100), ""
    else:
        sizes = [4, 8, 16] if quick else [4, 8, 16, 24]
        measured = [memory("resnet50", "stored", n) for n in sizes]
        intercept, slope = linear_fit(sizes, measured)
        worst = max(abs(intercept + slope * n - y) / y for n, y in zip(sizes, measured, strict=True))
        s100, note = intercept + slope * 100, " (extrapolated)"
        print(f"  memory  stored activations: linear in |D_aux|: {slope / 2**20:.1f} MiB per aux image "
              f"(2 epochs x one image's hooked activations) + {intercept / 2**20:.1f} MiB, largest deviation "
              f"from the line {worst:.1%}", flush=True)
        print(f"  memory  stored activations |D_aux| = 100: {mb(s100)} extra: EXTRAPOLATED from |D_aux| = "
              f"{sizes}, not measured", flush=True)
        results["resnet50_stored_fit"] = {"sizes": sizes, "intercept_bytes": intercept, "slope_bytes": slope,
                                          "max_relative_deviation": worst, "extrapolated_100": s100}
    add_ratio(f"stored / monitor memory, |D_aux| 100{note}", "ResNet-50", s100 / m100, ">= 10")
    add_ratio("monitor time / epoch of 126,689", "ResNet-50", times["monitor_s"] / times["epoch_s"], "info")

    print(f"\n{'ratio':52s} {'model':10s} {'value':>8s}   {'target':>6s}   result")
    for name, model, value, target, ok in ratios:
        shown = f"{value:8.3%}" if name.startswith("monitor time") else f"{value:8.2f}"
        verdict = "info" if ok is None else "PASS" if ok else "FAIL"
        print(f"{name:52s} {model:10s} {shown:>8s}   {target:>6s}   {verdict}")
    results["ratios"] = [{"ratio": n, "model": m, "value": v, "target": t, "pass": ok}
                         for n, m, v, t, ok in ratios]
    if args.json:
        with open(args.json, "w") as out:
            json.dump(results, out, indent=2)
    return results


if __name__ == "__main__":
    arguments = parse_args()
    if arguments.worker:
        worker(json.loads(arguments.worker))
    else:
        main(arguments)
