"""The README's model table is the one `python3 -m models.report` renders from the committed
cards."""

from pathlib import Path

from models.report import default_folders, table

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_model_table_matches_the_cards():
    rendered = [line for line in table(default_folders()).splitlines() if line.strip()]
    assert len(rendered) >= 10  # two tables: four models, baselines and published figures
    readme = README.read_text().splitlines()
    missing = [line for line in rendered if line not in readme]
    assert not missing, (
        "README.md's model table differs from the model cards; paste the output "
        f"of `python3 -m models.report` into it. Lines not in README: {missing}"
    )
