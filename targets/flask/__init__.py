"""Flask target: the model served by Flask under gunicorn (model tier of architecture b)."""
