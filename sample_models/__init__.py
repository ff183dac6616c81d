"""Sample configs and checkpoints, installed as the package data ``mtlexport.sample_models``
(found with ``mtlexport.demo.sample_dir()``), so that every command runs at once."""
