"""The ``genesel`` command-line interface: one module per subcommand."""
