"""The model table of the bundled-models guide (docs/models.md) is the one `python3 -m
models.report` renders from the committed cards."""

from pathlib import Path

from models.report import default_folders, table

PAGE = Path(__file__).resolve().parents[2] / "docs" / "models.md"


def test_readme_model_table_matches_the_cards():
    rendered = [line for line in table(default_folders()).splitlines() if line.strip()]
    assert len(rendered) >= 10  # two tables: four models, baselines and published figures
    page = PAGE.read_text().splitlines()
    missing = [line for line in rendered if line not in page]
    assert not missing, (
        "docs/models.md's model table differs from the model cards; paste the output "
        f"of `python3 -m models.report` into it. Lines not in it: {missing}"
    )
