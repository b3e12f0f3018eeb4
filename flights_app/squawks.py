"""Transponder codes that declare an emergency (one definition: the rules, the windows and the simulator)."""

EMERGENCY_SQUAWKS = {"7500": "hijack", "7600": "radio failure", "7700": "general emergency"}
