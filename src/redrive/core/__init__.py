"""The pure core: names, outcomes, settings, task state, signal parsing, decisions, selection,
jobs and records. No I/O and no Google client imports: everything here is tested by tables."""
