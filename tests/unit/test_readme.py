from infra.settings_doc import README, render


def test_readme_configuration_table_matches_settings():
    text = README.read_text()
    assert render(text) == text, "README's configuration table is stale: run `python -m infra.settings_doc`"


def test_readme_names_the_two_commands():
    text = README.read_text()
    assert "make demo" in text and "make test" in text
