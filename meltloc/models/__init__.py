"""Models: the start/stop regression head, YOLO and the slice-classifier baselines."""
