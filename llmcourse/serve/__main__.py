"""`python -m llmcourse.serve`: the OpenAI-compatible server (see llmcourse/serve/__init__.py)."""

from llmcourse.serve import main

if __name__ == "__main__":
    main()
