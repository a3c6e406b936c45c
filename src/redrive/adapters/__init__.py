"""The I/O edges, one small adapter per service: Cloud Tasks (one call at a time, and many job
creations at once), Cloud Run Admin, the fix-check strategies that read it, the log line writer and
the in-process throttle. Each takes its client as a parameter; Google errors become redrive's in
`translate`, once."""
