"""The values patchd's options offer, torch-free so that declaring the options never loads torch."""

AUTO = 'auto'   # --patchd-block: the resolution/8 map, at least 8x8
