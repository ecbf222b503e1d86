"""Simulate machines whose torch has only some quantized engines (see README.md in this folder)."""

from .simulate import ENV_VAR, PRESETS, activate, activate_from_env, deactivate, simulate_engines, simulated

__all__ = ["ENV_VAR", "PRESETS", "activate", "activate_from_env", "deactivate", "simulate_engines", "simulated"]
