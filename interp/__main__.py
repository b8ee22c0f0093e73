from interp.cli import app

app()
