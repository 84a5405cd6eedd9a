"""The base endpoint, tags lists, the catalog, and answers to unknown routes."""

from __future__ import annotations

import re
import uuid

import httpx
import pytest

from tests.api.helpers import assert_error, push_image, put_manifest, sha256

# Byte order puts digits before uppercase, then `_`, then lowercase; `-` and
# `.` sort before digits. A case-insensitive sort would fail on these.
TAGS = ["b", "B", "a", "A", "0", "9", "_x", "a-b", "a.b", "a_b", "Z", "z", "a0"]

# Repository components under a per-test prefix; `-`, `.`, `/`, digits and `_`
# in this order by bytes.
REPOSITORY_SUFFIXES = ["b", "a", "a-b", "a.b", "a/b", "a0", "a_b", "ab", "a__b"]

_LINK = re.compile(r'^<(?P<url>[^>]+)>;\s*rel="next"$')


def next_link(response: httpx.Response) -> str | None:
    """The URL in `Link: <url>; rel="next"`, or None when there is none."""
    header = response.headers.get("link")
    if header is None:
        return None
    match = _LINK.match(header.strip())
    assert match, f"malformed Link header: {header!r}"
    return match["url"]


def follow(client: httpx.Client, url: str, key: str) -> list[list[str]]:
    """Every page from `url` to the one without a `Link`."""
    pages = []
    next_url: str | None = url
    while next_url is not None:
        response = client.get(next_url)
        assert response.status_code == 200, response.text
        pages.append(response.json()[key])
        next_url = next_link(response)
        assert len(pages) < 1000, "pagination does not end"
    return pages


def assert_json_error(response: httpx.Response, status: int) -> None:
    """A spec error body, whatever the code: never plain text, never a 500."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    errors = response.json()["errors"]
    assert errors
    assert all({"code", "message"} <= set(error) for error in errors)


@pytest.fixture
def tagged_repo(client: httpx.Client, repo: str) -> str:
    """A repository holding one manifest under every name in `TAGS`."""
    body, digest = push_image(client, repo, TAGS[0])
    response = put_manifest(
        client, repo, digest, body, params=[("tag", tag) for tag in TAGS[1:]]
    )
    assert response.status_code == 201, response.text
    return repo


@pytest.fixture
def catalog_prefix(client: httpx.Client) -> str:
    """A prefix owning the repositories `prefix/<suffix>` for each suffix.

    The catalog holds every repository of the session, so tests read it from
    `last=<prefix>`, which sorts just before all of these.
    """
    prefix = f"catalog-{uuid.uuid4().hex[:12]}"
    for suffix in REPOSITORY_SUFFIXES:
        push_image(client, f"{prefix}/{suffix}")
    return prefix


def expected_repositories(prefix: str) -> list[str]:
    return sorted(f"{prefix}/{suffix}" for suffix in REPOSITORY_SUFFIXES)


def ours(names: list[str], prefix: str) -> list[str]:
    return [name for name in names if name.startswith(f"{prefix}/")]


# The base endpoint


def test_base_endpoint_answers_200_with_api_version(client: httpx.Client) -> None:
    response = client.get("/v2/")

    assert response.status_code == 200
    assert response.headers["docker-distribution-api-version"] == "registry/2.0"


def test_base_endpoint_answers_head(client: httpx.Client) -> None:
    response = client.head("/v2/")

    assert response.status_code == 200
    assert response.headers["docker-distribution-api-version"] == "registry/2.0"


def test_base_endpoint_without_slash_reaches_it(client: httpx.Client) -> None:
    response = client.get("/v2")

    assert response.status_code == 200
    assert response.headers["docker-distribution-api-version"] == "registry/2.0"


def test_errors_carry_the_api_version(client: httpx.Client, repo: str) -> None:
    response = client.get(f"/v2/{repo}/manifests/latest")

    assert response.status_code == 404
    assert response.headers["docker-distribution-api-version"] == "registry/2.0"


# Tags lists


def test_tags_are_listed_in_byte_order(client: httpx.Client, tagged_repo: str) -> None:
    response = client.get(f"/v2/{tagged_repo}/tags/list")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    assert response.json() == {"name": tagged_repo, "tags": sorted(TAGS)}
    assert "link" not in response.headers


def test_tags_n_limits_the_page_and_links_to_the_next(
    client: httpx.Client, tagged_repo: str
) -> None:
    response = client.get(f"/v2/{tagged_repo}/tags/list", params={"n": 3})

    assert response.json()["tags"] == sorted(TAGS)[:3]
    link = next_link(response)
    assert link is not None
    assert link.startswith(f"/v2/{tagged_repo}/tags/list?")


def test_tags_last_starts_after_the_given_tag(
    client: httpx.Client, tagged_repo: str
) -> None:
    params = {"n": 2, "last": "a"}

    response = client.get(f"/v2/{tagged_repo}/tags/list", params=params)

    assert response.json()["tags"] == [t for t in sorted(TAGS) if t > "a"][:2]


def test_tags_last_need_not_be_a_tag(client: httpx.Client, tagged_repo: str) -> None:
    response = client.get(f"/v2/{tagged_repo}/tags/list", params={"last": "a00"})

    assert response.json()["tags"] == [t for t in sorted(TAGS) if t > "a00"]


def test_tags_last_without_n_lists_the_rest(
    client: httpx.Client, tagged_repo: str
) -> None:
    response = client.get(f"/v2/{tagged_repo}/tags/list", params={"last": "Z"})

    assert response.json()["tags"] == [t for t in sorted(TAGS) if t > "Z"]
    assert "link" not in response.headers


def test_tags_links_lead_through_the_whole_list(
    client: httpx.Client, tagged_repo: str
) -> None:
    pages = follow(client, f"/v2/{tagged_repo}/tags/list?n=4", "tags")

    assert [len(page) for page in pages] == [4, 4, 4, 1]
    assert [tag for page in pages for tag in page] == sorted(TAGS)


def test_tags_no_link_when_the_page_ends_the_list(
    client: httpx.Client, tagged_repo: str
) -> None:
    for n in (len(TAGS), len(TAGS) + 1):
        response = client.get(f"/v2/{tagged_repo}/tags/list", params={"n": n})

        assert response.json()["tags"] == sorted(TAGS)
        assert "link" not in response.headers


def test_tags_no_link_after_the_last_tag(
    client: httpx.Client, tagged_repo: str
) -> None:
    params = {"n": 5, "last": max(TAGS)}

    response = client.get(f"/v2/{tagged_repo}/tags/list", params=params)

    assert response.status_code == 200
    assert response.json()["tags"] == []
    assert "link" not in response.headers


def test_tags_n_zero_gives_an_empty_list_without_link(
    client: httpx.Client, tagged_repo: str
) -> None:
    response = client.get(f"/v2/{tagged_repo}/tags/list", params={"n": 0})

    assert response.status_code == 200
    assert response.json()["tags"] == []
    assert "link" not in response.headers


@pytest.mark.parametrize("n", ["-1", "abc", "1.5", "0x10"])
def test_tags_bad_n_is_a_json_400(
    client: httpx.Client, tagged_repo: str, n: str
) -> None:
    response = client.get(f"/v2/{tagged_repo}/tags/list", params={"n": n})

    assert_error(response, 400, "PAGINATION_NUMBER_INVALID")


def test_tags_of_an_unknown_repository_is_name_unknown(
    client: httpx.Client, repo: str
) -> None:
    response = client.get(f"/v2/{repo}/tags/list")

    assert_error(response, 404, "NAME_UNKNOWN")


def test_tags_of_an_invalid_repository_name_is_name_invalid(
    client: httpx.Client,
) -> None:
    response = client.get("/v2/Not_Valid/tags/list")

    assert_error(response, 400, "NAME_INVALID")


def test_tags_list_omits_a_deleted_tag(client: httpx.Client, repo: str) -> None:
    push_image(client, repo, "keep")
    push_image(client, repo, "drop")

    client.delete(f"/v2/{repo}/manifests/drop")
    response = client.get(f"/v2/{repo}/tags/list")

    assert response.json()["tags"] == ["keep"]


def test_manifest_pushed_by_digest_adds_no_tag(client: httpx.Client, repo: str) -> None:
    push_image(client, repo, "v1")
    body, _ = push_image(client, repo, "v2")
    client.delete(f"/v2/{repo}/manifests/v2")

    put_manifest(client, repo, sha256(body), body)
    response = client.get(f"/v2/{repo}/tags/list")

    assert response.json()["tags"] == ["v1"]


# The catalog


def test_catalog_lists_repositories_in_byte_order(
    client: httpx.Client, catalog_prefix: str
) -> None:
    expected = expected_repositories(catalog_prefix)
    params = {"n": len(expected), "last": catalog_prefix}

    response = client.get("/v2/_catalog", params=params)

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    assert response.json()["repositories"] == expected


def test_catalog_n_limits_the_page_and_links_to_the_next(
    client: httpx.Client, catalog_prefix: str
) -> None:
    params = {"n": 2, "last": catalog_prefix}

    response = client.get("/v2/_catalog", params=params)

    assert response.json()["repositories"] == expected_repositories(catalog_prefix)[:2]
    link = next_link(response)
    assert link is not None
    assert link.startswith("/v2/_catalog?")


def test_catalog_links_lead_through_the_prefix(
    client: httpx.Client, catalog_prefix: str
) -> None:
    url: str | None = f"/v2/_catalog?n=2&last={catalog_prefix}"
    seen: list[str] = []
    while url is not None:
        response = client.get(url)
        page = response.json()["repositories"]
        assert len(page) <= 2
        seen += page
        url = next_link(response) if ours(page, catalog_prefix) == page else None

    assert ours(seen, catalog_prefix) == expected_repositories(catalog_prefix)


def test_catalog_links_to_the_end_give_the_whole_catalog(
    client: httpx.Client, catalog_prefix: str
) -> None:
    whole = client.get("/v2/_catalog").json()["repositories"]

    pages = follow(client, "/v2/_catalog?n=3", "repositories")

    assert [name for page in pages for name in page] == whole
    assert all(len(page) == 3 for page in pages[:-1])
    assert ours(whole, catalog_prefix) == expected_repositories(catalog_prefix)


def test_catalog_last_starts_after_the_given_repository(
    client: httpx.Client, catalog_prefix: str
) -> None:
    expected = expected_repositories(catalog_prefix)
    params = {"n": 3, "last": expected[2]}

    response = client.get("/v2/_catalog", params=params)

    assert response.json()["repositories"] == expected[3:6]


def test_catalog_n_zero_gives_an_empty_list_without_link(
    client: httpx.Client, catalog_prefix: str
) -> None:
    response = client.get("/v2/_catalog", params={"n": 0})

    assert response.status_code == 200
    assert response.json()["repositories"] == []
    assert "link" not in response.headers


@pytest.mark.parametrize("n", ["-1", "abc", "1.5"])
def test_catalog_bad_n_is_a_json_400(client: httpx.Client, n: str) -> None:
    response = client.get("/v2/_catalog", params={"n": n})

    assert_error(response, 400, "PAGINATION_NUMBER_INVALID")


def test_catalog_omits_a_repository_without_manifests(
    client: httpx.Client, catalog_prefix: str
) -> None:
    empty = f"{catalog_prefix}/blobs-only"
    digest = sha256(b"only a blob")
    client.post(
        f"/v2/{empty}/blobs/uploads/", params={"digest": digest}, content=b"only a blob"
    )

    response = client.get("/v2/_catalog", params={"last": catalog_prefix})

    assert empty not in response.json()["repositories"]


# Unknown endpoints and methods


@pytest.mark.parametrize(
    "path",
    ["/", "/v1/", "/nothing", "/v2/library", "/v2/library/debian", "/v2/a/b/x/c"],
)
def test_unknown_endpoint_is_a_json_404(client: httpx.Client, path: str) -> None:
    response = client.get(path)

    assert_json_error(response, 404)


def test_unknown_tags_endpoint_is_a_json_404(client: httpx.Client, repo: str) -> None:
    push_image(client, repo, "v1")

    response = client.get(f"/v2/{repo}/tags/everything")

    assert_json_error(response, 404)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/v2/"),
        ("DELETE", "/v2/"),
        ("POST", "/v2/_catalog"),
        ("DELETE", "/v2/_catalog"),
        ("POST", "/v2/{repo}/tags/list"),
        ("DELETE", "/v2/{repo}/tags/list"),
    ],
)
def test_unsupported_method_is_a_json_405(
    client: httpx.Client, repo: str, method: str, path: str
) -> None:
    response = client.request(method, path.format(repo=repo))

    assert_json_error(response, 405)


@pytest.mark.parametrize("n", ["%C2%B2", "%D9%A1"])
def test_non_ascii_digits_are_not_page_sizes(client, repo, n):
    push_image(client, repo, "v1")
    for path in ("/v2/_catalog", f"/v2/{repo}/tags/list"):
        response = client.get(f"{path}?n={n}")
        assert_error(response, 400, "PAGINATION_NUMBER_INVALID")
