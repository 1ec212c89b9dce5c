"""The pixseek application: the command line that ties search, indexer and webui together."""
