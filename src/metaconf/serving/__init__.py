"""Using a run's model: `ask.py` (answer questions from Python or the command line: `metaconf.ask`), `server.py`
(the same over an OpenAI-compatible HTTP API with calibrated confidence and abstention: `metaconf serve`),
`batching.py` (the queue that answers requests arriving together in one engine call) and `cli.py` (both
commands). The HTTP side (FastAPI, uvicorn) is imported only when serving."""
