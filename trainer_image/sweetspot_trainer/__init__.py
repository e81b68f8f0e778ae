"""Sweetspot's data plane: the program a trial stage runs (LoRA fine-tuning, early and final evaluation).

It reads one `sweetspot.contract.TrialConfig` and writes one `StageResult`; it never talks to Kubernetes
or the database. Heavy imports (torch, transformers, peft) happen inside the modules that need them.
"""
