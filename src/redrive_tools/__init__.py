"""Operator tools around the redrive runtime, never deployed: the `redrive` command line, the
demo, a functions-framework dev server and the deploy archive builder. They use the runtime's
public modules only."""
