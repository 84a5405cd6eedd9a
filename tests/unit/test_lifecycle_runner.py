import pytest

from dockyard.services.lifecycle.runner import governing_target


@pytest.mark.parametrize(
    ("targets", "repository", "governing"),
    [
        (["team", "team/app"], "team/app", "team/app"),
        (["team/app*", "team/app"], "team/app", "team/app"),
        (["team*", "team"], "team/app", "team"),
        (["*/app", "team"], "team/app", "team"),
        (["team/*", "team"], "team/app", "team"),
        (["team", "team/app-*"], "team/app-ci", "team/app-*"),
        (["team", "team/app"], "team/app/cache", "team/app"),
        (["team*"], "teams/app", "team*"),
        (["team", "team/app"], "teams/app", None),
        ([], "team/app", None),
    ],
)
def test_the_most_specific_target_governs(
    targets: list[str], repository: str, governing: str | None
) -> None:
    assert governing_target(targets, repository) == governing
    assert governing_target(targets[::-1], repository) == governing
