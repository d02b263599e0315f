"""The README's EventBridge recipes (a rule to SQS, a rule to an API destination) are templates a
merchant pastes: cfn-lint passes on each, offline."""
import os
import re
import sys

import pytest

from tests.deploy.test_package import run
from tests.vectorfiles import ROOT_PATH

RECIPES = re.findall(r"```yaml\n(Resources:\n.*?)```", (ROOT_PATH / "README.md").read_text(), re.S)


def test_the_readme_has_both_recipes():
    kinds = [set(re.findall(r"Type: (AWS::[A-Za-z:]+)", recipe)) for recipe in RECIPES]
    assert {"AWS::Events::Rule", "AWS::SQS::Queue"} <= kinds[0]
    assert {"AWS::Events::Connection", "AWS::Events::ApiDestination"} <= kinds[1]


@pytest.mark.parametrize("index", range(len(RECIPES)))
def test_cfn_lint_passes_on_each_recipe(tmp_path, index):
    path = tmp_path / f"recipe-{index}.yaml"
    path.write_text(RECIPES[index])
    done = run(os.path.join(os.path.dirname(sys.executable), "cfn-lint"), str(path))
    assert done.returncode == 0, done.stdout + done.stderr
