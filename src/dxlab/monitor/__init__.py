"""Drift monitoring against the training reference (`drift`) and the `dxlab monitor` command (`batch`)."""
