"""Every blueprint, registered in one place, in the order their request hooks must run."""
from __future__ import annotations

from flask import Flask

from alyx.blueprints.admin import bp as admin_ui_bp
from alyx.blueprints.auth import install_auth
from alyx.blueprints.batch import bp as batch_bp
from alyx.blueprints.collections import bp as collections_bp
from alyx.blueprints.docs import register_docs
from alyx.blueprints.events import bp as events_bp
from alyx.blueprints.executions import bp as executions_bp
from alyx.blueprints.files import bp as files_bp
from alyx.blueprints.functions import bp as functions_bp
from alyx.blueprints.health import bp as health_bp
from alyx.blueprints.jobs import bp as jobs_bp
from alyx.blueprints.realtime import register_realtime
from alyx.blueprints.schedules import bp as schedules_bp
from alyx.blueprints.settings import bp as settings_bp
from alyx.blueprints.users import bp as users_bp
from alyx.blueprints.webhooks import bp as webhooks_bp


def register_blueprints(app: Flask) -> None:
    """The one place blueprints are registered."""
    install_auth(app)  # first: its before_request sets g.principal (and callback callers) for the others
    app.register_blueprint(health_bp)
    app.register_blueprint(collections_bp)
    app.register_blueprint(batch_bp)
    app.register_blueprint(functions_bp)
    app.register_blueprint(executions_bp)
    register_realtime(app)
    app.register_blueprint(webhooks_bp)
    app.register_blueprint(schedules_bp)
    app.register_blueprint(jobs_bp)
    app.register_blueprint(events_bp)
    app.register_blueprint(files_bp)
    register_docs(app)
    app.register_blueprint(settings_bp)
    app.register_blueprint(users_bp)
    app.register_blueprint(admin_ui_bp)
