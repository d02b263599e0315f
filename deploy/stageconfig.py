"""The stage's side of `.chalice/`: the environment `chalice deploy` gives the functions (the
stage's `environment_variables` in config.json, which Chalice also sets before it imports app.py,
so names read at import, like the queues, come from here), and what a deploy recorded
(`.chalice/deployed/STAGE.json`)."""
import json
import pathlib


def _config_path(project_dir):
    return pathlib.Path(project_dir) / ".chalice" / "config.json"


def environment(project_dir, stage):
    return json.loads(_config_path(project_dir).read_text())["stages"][stage].get("environment_variables", {})


def set_environment(project_dir, stage, values):
    """Put `values` into the stage's environment_variables; the names whose value changed."""
    path = _config_path(project_dir)
    config = json.loads(path.read_text())
    environment = config["stages"][stage].setdefault("environment_variables", {})
    changed = [name for name, value in values.items() if environment.get(name) != value]
    if changed:
        environment.update(values)
        path.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n")
    return changed


def _deployed(project_dir, stage):
    """What the last successful `chalice deploy` recorded (it records nothing when it fails)."""
    path = pathlib.Path(project_dir) / ".chalice" / "deployed" / f"{stage}.json"
    return json.loads(path.read_text()).get("resources", []) if path.exists() else []


def api_url(project_dir, stage):
    """The REST API's URL as `chalice deploy` recorded it, or None (no successful deploy here)."""
    for resource in _deployed(project_dir, stage):
        if resource.get("resource_type") == "rest_api":
            return resource.get("rest_api_url")
    return None


def recorded_event_sources(project_dir, stage):
    """The UUIDs of the event source mappings `chalice deploy` recorded: the workers' queues
    (sqs_event) and the orders stream (dynamodb_event)."""
    return {resource.get("event_uuid") for resource in _deployed(project_dir, stage)
            if resource.get("resource_type") in ("sqs_event", "dynamodb_event")}
