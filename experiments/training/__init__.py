"""The paper's training harness: one run's config and recipe, the trainer loop, its records and summary."""
