from metaconf.cli import main

# The guard matters: vLLM's engine process may start by re-importing the main module (spawn).
if __name__ == "__main__":
    raise SystemExit(main())
