# Read by `flask --app app run` (python-dotenv). Real environment variables win.
FLASK_RUN_PORT=8080
ALYX_PROJECT_DIR=examples/quickstart
