"""Figures: faces and detections (``faces``), metric curves (``curves``), latency (``latency``)."""
