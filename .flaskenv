# Read by `flask --app app run` (python-dotenv). Real environment variables win.
# No FLASK_RUN_PORT here: app.py listens on the project's server.port (alyx.yaml, ALYX_SERVER_PORT)
# unless --port (or FLASK_RUN_PORT) is given.
ALYX_PROJECT_DIR=examples/quickstart
