"""The Markdown model card (models/evaluation/markdown.py)."""


def test_card_of_a_fine_tuned_model_names_its_parent():
    from models.evaluation.markdown import _lineage

    t = {
        "objective": "closed loop: roll out 10 frames",
        "clips_seen": 12,
        "clips_seen_this_run": 4,
        "init_from": {
            "name": "p",
            "sha256": "ab" * 32,
            "clips_seen": 8,
            "objective": None,
            "command": "framecast train --seed 1",
            "wall_time_s": 60.0,
        },
    }
    text = "\n".join(_lineage(t))
    assert "closed loop" in text and "`p`" in text and "framecast train --seed 1" in text
    assert "8 clips" in text and "4 clips in this run" in text
    assert _lineage({}) == []
