"""Lifecycle policies in ECR's JSON format: reading, checking and evaluating them.

A policy is a list of rules. Each rule selects images by their tags
(`selection.tagStatus` with a `tagPrefixList` or a `tagPatternList`), picks some
of those by a count (`imageCountMoreThan`) or an age (`sinceImagePushed`), and
expires them. Evaluation follows ECR's documented evaluator ("How lifecycle
policies work" and "Examples of lifecycle policies" in the ECR user guide):

- Every rule looks at every image at once, as if no other rule existed, so an
  image still counts towards a rule's `imageCountMoreThan` when another rule
  expires or protects it.
- The first rule by priority whose tags select an image owns it: no rule after
  it may expire that image, even when the owner leaves it in place. An image
  is therefore expired by one rule or by none.
- Counts and ages go by push time, oldest expired first.

Beyond ECR, Dockyard reads two more words:

- `countType: sinceImagePulled` measures days since the image was last pulled,
  or since its push if it never was. (ECR has since added the same count type,
  but only for moving images to archive storage, which Dockyard lacks.)
- `action.type: keep` protects images from every later rule. A keep rule owns
  only the images it keeps: the newest `countNumber` for `imageCountMoreThan`,
  or those pushed (pulled) within `countNumber` days for the age count types.
  The other images its tags select are left to the rules after it, so "keep
  whatever was pulled this week" can come before the rules that clean up.

Nothing here touches storage, the database or HTTP: the caller lists the
images of one repository and applies the expiries it gets back.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence, Set
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

TAG_STATUSES = ("tagged", "untagged", "any")
IMAGE_COUNT = "imageCountMoreThan"
AGE_COUNT_TYPES = ("sinceImagePushed", "sinceImagePulled")
COUNT_TYPES = (IMAGE_COUNT, *AGE_COUNT_TYPES)
COUNT_UNITS = ("days",)
EXPIRE = "expire"
KEEP = "keep"
ACTIONS = (EXPIRE, KEEP)
STORAGE_CLASSES = ("standard",)

# ECR's limit on `*` in one tag pattern; more is refused, not ignored.
MAX_WILDCARDS = 4

# Bounds on what a document may ask for, so that neither checking nor
# evaluating it can run out of time, memory or datetime range. ECR documents
# only a length (30,720 characters per policy), which holds far fewer rules.
MAX_RULES = 1000
MAX_TAG_LIST = 100
MAX_TAG_TEXT = 128  # the longest tag the distribution spec allows
MAX_DESCRIPTION = 1024
MAX_AGE_DAYS = 36500  # a hundred years
MAX_IMAGE_COUNT = 1_000_000
MAX_INTEGER = 2**63 - 1  # what a signed 64-bit column holds

_POLICY_FIELDS = ("rules",)
_RULE_FIELDS = ("rulePriority", "description", "selection", "action")
_SELECTION_FIELDS = (
    "tagStatus",
    "tagPatternList",
    "tagPrefixList",
    "storageClass",
    "countType",
    "countUnit",
    "countNumber",
)
_ACTION_FIELDS = ("type",)
_TAG_LISTS = ("tagPatternList", "tagPrefixList")

# ECR values for its archive storage tier, which Dockyard does not have.
_ARCHIVE_VALUES = frozenset({"archive", "transition", "sinceImageTransitioned"})


class PolicyInvalid(Exception):
    """A policy document with one or more faults, each naming its rule and field."""

    def __init__(self, faults: Sequence[str]) -> None:
        self.faults = tuple(faults)
        super().__init__("invalid lifecycle policy: " + "; ".join(self.faults))


# The policy


@dataclass(frozen=True, slots=True)
class Selection:
    """Which images a rule looks at, and which of those it picks.

    At most one of `tag_prefixes` and `tag_patterns` is set, and only when
    `tag_status` is "tagged"; the count unit is always days, for the age types.
    """

    tag_status: str
    count_type: str
    count_number: int
    tag_prefixes: tuple[str, ...] = ()
    tag_patterns: tuple[str, ...] = ()

    def selects(self, tags: Sequence[str]) -> bool:
        """Whether an image with these tags meets the rule's tagging requirements."""
        if self.tag_status == "any":
            return True
        if self.tag_status == "untagged":
            return not tags

        # The guide's evaluation rules: an image matches when every entry of
        # the tagPatternList or tagPrefixList matches at least one of its tags.
        # One entry is not enough: its example with "alpha*" and "beta*"
        # selects only the images that carry both kinds of tag.
        if self.tag_patterns:
            return all(
                any(_wildcard_match(p, tag) for tag in tags) for p in self.tag_patterns
            )
        return all(any(tag.startswith(p) for tag in tags) for p in self.tag_prefixes)

    @property
    def tag_list(self) -> tuple[str, tuple[str, ...]] | None:
        """The tag list and its field name, or None for untagged and any."""
        if self.tag_patterns:
            return "tagPatternList", self.tag_patterns
        if self.tag_prefixes:
            return "tagPrefixList", self.tag_prefixes
        return None

    def to_json(self) -> dict[str, Any]:
        document: dict[str, Any] = {"tagStatus": self.tag_status}
        if self.tag_list is not None:
            name, values = self.tag_list
            document[name] = list(values)
        document["countType"] = self.count_type
        if self.count_type in AGE_COUNT_TYPES:
            document["countUnit"] = "days"
        document["countNumber"] = self.count_number
        return document


@dataclass(frozen=True, slots=True)
class Rule:
    priority: int
    selection: Selection
    action: str = EXPIRE
    description: str | None = None

    def to_json(self) -> dict[str, Any]:
        document: dict[str, Any] = {"rulePriority": self.priority}
        if self.description is not None:
            document["description"] = self.description
        document["selection"] = self.selection.to_json()
        document["action"] = {"type": self.action}
        return document


@dataclass(frozen=True, slots=True)
class Policy:
    """A checked policy; `rules` in the order they apply, rulePriority 1 first."""

    rules: tuple[Rule, ...]

    def to_json(self) -> dict[str, Any]:
        """The policy as ECR's JSON, in canonical form."""
        return {"rules": [rule.to_json() for rule in self.rules]}


def _wildcard_match(pattern: str, tag: str) -> bool:
    """Whether `tag` matches `pattern`: `*` is any run of characters, the rest literal.

    No regex: one with several `.*` backtracks for seconds on a long tag, and
    patterns come from users. Taking each literal part at its first place
    after the one before is enough, and each part is looked for once.
    """
    first, *middle = pattern.split("*")
    if not middle:
        return tag == pattern
    last = middle.pop()
    if len(tag) < len(first) + len(last):
        return False
    if not (tag.startswith(first) and tag.endswith(last)):
        return False

    position, end = len(first), len(tag) - len(last)
    for part in middle:
        found = tag.find(part, position, end)
        if found < 0:
            return False
        position = found + len(part)
    return True


# Reading and checking a document


def parse_policy(text: str | bytes) -> Policy:
    """Read a policy from its JSON text, raising `PolicyInvalid` with every fault."""
    try:
        document = json.loads(text)
    except RecursionError:
        raise PolicyInvalid(["policy: nested too deeply to read"]) from None
    except ValueError as exc:  # UnicodeDecodeError included
        raise PolicyInvalid([f"policy: not valid JSON ({exc})"]) from None

    return policy_from_json(document)


def policy_from_json(document: object) -> Policy:
    """Check a decoded policy document, raising `PolicyInvalid` with every fault."""
    faults: list[str] = []
    drafts = _read_rules(document, faults)

    _check_priorities(drafts, faults)
    _check_any_rules_last(drafts, faults)
    _check_claims_unique(drafts, faults)
    if faults:
        raise PolicyInvalid(faults)

    rules = (draft.rule for draft in drafts if draft.rule is not None)
    return Policy(tuple(sorted(rules, key=lambda rule: rule.priority)))


@dataclass(frozen=True, slots=True)
class _Draft:
    """One rule as read: its place, its priority if valid, the rule if all is."""

    index: int
    priority: int | None
    rule: Rule | None

    @property
    def name(self) -> str:
        return f"rules[{self.index}]"

    @property
    def label(self) -> str:
        if self.priority is None:
            return self.name
        return f"{self.name} (priority {self.priority})"


class _Fields:
    """One JSON object of the document; each fault in it is recorded once.

    Faults read `<label>: <path><field> <problem>`, for example
    `rules[1] (priority 20): selection.countUnit is required ...`.
    """

    def __init__(
        self,
        value: object,
        label: str,
        path: str,
        known: Sequence[str],
        faults: list[str],
    ) -> None:
        self.label = label
        self.path = path
        self.faults = faults
        self.data: Mapping[str, object] = value if isinstance(value, dict) else {}
        self.is_object = isinstance(value, dict)
        if not self.is_object:
            subject = path.rstrip(".")
            problem = f"{subject} must be" if subject else "must be"
            self.faults.append(f"{label}: {problem} a JSON object")
        for key in self.data:
            if key not in known:
                self.faults.append(f"{label}: unknown field {path}{_name(key)}")

    def fault(self, field: str, problem: str) -> None:
        self.faults.append(f"{self.label}: {self.path}{field} {problem}")

    def has(self, field: str) -> bool:
        return field in self.data

    def positive_integer(
        self, field: str, limit: int = MAX_INTEGER, why: str = ""
    ) -> int | None:
        if field not in self.data:
            self.fault(field, "is required: a positive integer")
            return None
        value = self.data[field]
        number = _positive_integer(value)
        if number is None:
            self.fault(field, f"must be a positive integer, not {_show(value)}")
            return None
        if number > limit:
            self.fault(field, f"must be at most {limit}{why}, not {_show(value)}")
            return None
        return number

    def choice(self, field: str, options: Sequence[str]) -> str | None:
        if field not in self.data:
            self.fault(field, f"is required: one of {_options(options)}")
            return None
        value = self.data[field]
        if isinstance(value, str) and value in options:
            return value

        self.fault(field, _bad_choice(value, options))
        return None

    def text(self, field: str, limit: int) -> str | None:
        if field not in self.data:
            return None
        value = self.data[field]
        problem = _text_problem(value, limit, empty=True)
        if problem is None:
            assert isinstance(value, str)
            return value

        self.fault(field, problem)
        return None

    def tag_list(self, field: str) -> tuple[str, ...] | None:
        if field not in self.data:
            return None
        value = self.data[field]
        if not isinstance(value, list) or not value:
            self.fault(
                field, f"must be a non-empty list of strings, not {_show(value)}"
            )
            return None
        if len(value) > MAX_TAG_LIST:
            count = f"has {len(value)} entries; at most {MAX_TAG_LIST} are allowed"
            self.fault(field, count)
            return None

        faults = len(self.faults)
        for index, item in enumerate(value):
            problem = _text_problem(item, MAX_TAG_TEXT, empty=False)
            if problem is not None:
                self.fault(f"{field}[{index}]", problem)
        return tuple(value) if len(self.faults) == faults else None


def _read_rules(document: object, faults: list[str]) -> list[_Draft]:
    policy = _Fields(document, "policy", "", _POLICY_FIELDS, faults)
    if not isinstance(document, dict):
        return []

    rules = document.get("rules")
    if "rules" not in document:
        policy.fault("rules", "is required: a list of one or more rules")
        return []
    if not isinstance(rules, list) or not rules:
        policy.fault(
            "rules", f"must be a list of one or more rules, not {_show(rules)}"
        )
        return []
    if len(rules) > MAX_RULES:
        policy.fault(
            "rules", f"has {len(rules)} rules; at most {MAX_RULES} are allowed"
        )
        return []
    return [_read_rule(index, value, faults) for index, value in enumerate(rules)]


def _read_rule(index: int, value: object, faults: list[str]) -> _Draft:
    raw = value.get("rulePriority") if isinstance(value, dict) else None
    priority = _positive_integer(raw)
    if priority is not None and priority > MAX_INTEGER:
        priority = None
    draft = _Draft(index, priority, None)
    count = len(faults)

    fields = _Fields(value, draft.label, "", _RULE_FIELDS, faults)
    if not fields.is_object:
        return draft

    fields.positive_integer("rulePriority")
    description = fields.text("description", MAX_DESCRIPTION)
    selection = _read_selection(fields, faults)
    action = _read_action(fields, faults)

    if len(faults) > count or draft.priority is None:
        return draft
    assert selection is not None and action is not None
    rule = Rule(draft.priority, selection, action, description)
    return _Draft(index, draft.priority, rule)


def _read_action(rule: _Fields, faults: list[str]) -> str | None:
    if not rule.has("action"):
        rule.fault("action", "is required: an object with a type")
        return None

    action = _Fields(rule.data["action"], rule.label, "action.", _ACTION_FIELDS, faults)
    return action.choice("type", ACTIONS) if action.is_object else None


def _read_selection(rule: _Fields, faults: list[str]) -> Selection | None:
    if not rule.has("selection"):
        rule.fault("selection", "is required: an object with tagStatus and counts")
        return None

    value = rule.data["selection"]
    fields = _Fields(value, rule.label, "selection.", _SELECTION_FIELDS, faults)
    if not fields.is_object:
        return None

    tag_status = fields.choice("tagStatus", TAG_STATUSES)
    prefixes, patterns = _read_tag_lists(fields, tag_status)
    count_type = fields.choice("countType", COUNT_TYPES)
    _read_count_unit(fields, count_type)
    count_number = fields.positive_integer("countNumber", *_count_limit(count_type))
    if fields.has("storageClass"):
        fields.choice("storageClass", STORAGE_CLASSES)

    if tag_status is None or count_type is None or count_number is None:
        return None
    return Selection(
        tag_status, count_type, count_number, prefixes or (), patterns or ()
    )


def _read_tag_lists(
    fields: _Fields, tag_status: str | None
) -> tuple[tuple[str, ...] | None, tuple[str, ...] | None]:
    prefixes = fields.tag_list("tagPrefixList")
    patterns = fields.tag_list("tagPatternList")
    given = [name for name in _TAG_LISTS if fields.has(name)]

    if tag_status in ("untagged", "any"):
        for name in given:
            fields.fault(
                name, f"is only allowed with tagStatus tagged, not {tag_status}"
            )
    elif tag_status == "tagged" and not given:
        fields.fault("tagStatus", "tagged needs a tagPatternList or a tagPrefixList")
    elif len(given) == 2:
        fields.fault("tagPatternList", "cannot be set together with tagPrefixList")

    for index, pattern in enumerate(patterns or ()):
        wildcards = pattern.count("*")
        if wildcards > MAX_WILDCARDS:
            problem = (
                f"has {wildcards} wildcards (*); at most {MAX_WILDCARDS} are allowed"
            )
            fields.fault(f"tagPatternList[{index}]", problem)
    return prefixes, patterns


def _count_limit(count_type: str | None) -> tuple[int, str]:
    """The largest countNumber for a count type, and the words to say why."""
    if count_type in AGE_COUNT_TYPES:
        return MAX_AGE_DAYS, f" days (100 years) with countType {count_type}"
    if count_type == IMAGE_COUNT:
        return MAX_IMAGE_COUNT, f" with countType {IMAGE_COUNT}"
    return MAX_INTEGER, ""


def _read_count_unit(fields: _Fields, count_type: str | None) -> None:
    if count_type == IMAGE_COUNT:
        if fields.has("countUnit"):
            fields.fault("countUnit", f"is not allowed with countType {IMAGE_COUNT}")
    elif count_type in AGE_COUNT_TYPES:
        if not fields.has("countUnit"):
            fields.fault("countUnit", f"is required with countType {count_type}: days")
        else:
            fields.choice("countUnit", COUNT_UNITS)


def _check_priorities(drafts: Sequence[_Draft], faults: list[str]) -> None:
    by_priority: dict[int, list[str]] = {}
    for draft in drafts:
        if draft.priority is not None:
            by_priority.setdefault(draft.priority, []).append(draft.name)

    for priority, names in by_priority.items():
        if len(names) > 1:
            listed = ", ".join(names[:-1]) + " and " + names[-1]
            faults.append(f"{listed}: rulePriority {priority} is used more than once")


def _check_any_rules_last(drafts: Sequence[_Draft], faults: list[str]) -> None:
    """ECR: a rule with tagStatus any must have the highest rulePriority.

    Such a rule owns every image, so no rule after it could act. A keep rule
    owns only what it keeps, so a keep rule on `any` may come anywhere.
    """
    numbered = [(d.priority, d.label) for d in drafts if d.priority is not None]
    if not numbered:
        return

    highest, highest_label = max(numbered)
    for draft in drafts:
        rule = draft.rule
        if rule is None or rule.priority >= highest:
            continue
        if rule.selection.tag_status == "any" and _claims_all_it_selects(rule):
            faults.append(
                f"{draft.label}: selection.tagStatus any needs the highest "
                f"rulePriority of the policy, but {highest_label} is higher"
            )


def _check_claims_unique(drafts: Sequence[_Draft], faults: list[str]) -> None:
    """ECR: only one rule may select untagged images, and rules' tag lists differ.

    Read here as: no two expire rules on untagged images, and no two expire
    rules with the same set of prefixes (or patterns). The second of either
    could never own an image, so it is refused rather than left to do nothing.
    """
    owners: dict[object, str] = {}
    for draft in sorted(drafts, key=lambda draft: draft.priority or 0):
        rule = draft.rule
        if rule is None or not _claims_all_it_selects(rule):
            continue
        claim = _claim(rule.selection)
        if claim is None:
            continue
        if claim in owners:
            faults.append(
                f"{draft.label}: {_claim_fault(rule.selection, owners[claim])}"
            )
        else:
            owners[claim] = draft.label


def _claims_all_it_selects(rule: Rule) -> bool:
    return rule.action == EXPIRE


def _claim(selection: Selection) -> object | None:
    if selection.tag_status == "untagged":
        return "untagged"
    if selection.tag_list is not None:
        name, values = selection.tag_list
        return name, frozenset(values)
    return None


def _claim_fault(selection: Selection, owner: str) -> str:
    if selection.tag_status == "untagged":
        return f"selection.tagStatus untagged: {owner} already expires untagged images"
    assert selection.tag_list is not None
    name = selection.tag_list[0]
    return f"selection.{name} is the same as that of {owner}"


def _positive_integer(value: object) -> int | None:
    # JSON true and false decode to bool, which Python counts as an int.
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        return None
    return value


def _text_problem(value: object, limit: int, *, empty: bool) -> str | None:
    """What keeps `value` from being a string the policy may hold, if anything."""
    if not isinstance(value, str) or not (value or empty):
        kind = "a string" if empty else "a non-empty string"
        return f"must be {kind}, not {_show(value)}"
    if len(value) > limit:
        return f"has {len(value)} characters; at most {limit} are allowed"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        # JSON's \ud800 escapes decode to lone surrogates, which no UTF-8
        # store or response can hold.
        return f"holds a lone surrogate, which UTF-8 cannot encode: {_show(value)}"
    return None


def _show(value: object) -> str:
    """A short JSON rendering of `value` for a fault, whatever `value` is."""
    try:
        text = json.dumps(value)
    except (TypeError, ValueError, RecursionError):
        # Only from policy_from_json: a value JSON has no form for, an integer
        # too long to print, or a nesting too deep to walk.
        return f"<{type(value).__name__}>"
    return text if len(text) <= 40 else text[:37] + "..."


def _name(key: object) -> str:
    """A field name as a fault shows it: as it is when short and printable."""
    if isinstance(key, str) and 0 < len(key) <= 40 and key.isprintable():
        return key
    return _show(key)


def _options(options: Sequence[str]) -> str:
    return ", ".join(options)


def _bad_choice(value: object, options: Sequence[str]) -> str:
    problem = f"must be one of {_options(options)}, not {_show(value)}"
    if isinstance(value, str) and value in _ARCHIVE_VALUES:
        problem += " (Dockyard has no archive storage)"
    return problem


# Evaluation


@dataclass(frozen=True, slots=True)
class Image:
    """One manifest of a repository, as the evaluator sees it.

    Datetimes should all be timezone-aware. `size` is what expiring the image
    would free, as the caller counts it (blobs shared with other images are
    the caller's concern).
    """

    digest: str
    tags: tuple[str, ...]
    pushed_at: datetime
    last_pulled_at: datetime | None = None
    size: int = 0

    @property
    def last_used_at(self) -> datetime:
        """The last pull, or the push for an image never pulled."""
        return self.pushed_at if self.last_pulled_at is None else self.last_pulled_at


@dataclass(frozen=True, slots=True)
class Expiry:
    image: Image
    rule: Rule

    @property
    def rule_priority(self) -> int:
        return self.rule.priority


@dataclass(frozen=True, slots=True)
class RuleOutcome:
    """What one rule does: the images it expires and those it owns but keeps.

    Both are oldest first. `kept` holds the images the rule protects from every
    later rule: for an expire rule, those its tags select that its count or age
    spares; for a keep rule, those it keeps.
    """

    rule: Rule
    expired: tuple[Image, ...]
    kept: tuple[Image, ...]

    @property
    def bytes_freed(self) -> int:
        return sum(image.size for image in self.expired)


@dataclass(frozen=True, slots=True)
class Evaluation:
    """A policy's verdict on a repository, one outcome per rule by priority."""

    outcomes: tuple[RuleOutcome, ...]

    @property
    def expiries(self) -> tuple[Expiry, ...]:
        """Every image to expire, by rule priority and then oldest first."""
        return tuple(
            Expiry(image, outcome.rule)
            for outcome in self.outcomes
            for image in outcome.expired
        )

    @property
    def expired_digests(self) -> frozenset[str]:
        return frozenset(expiry.image.digest for expiry in self.expiries)

    @property
    def bytes_freed(self) -> int:
        return sum(outcome.bytes_freed for outcome in self.outcomes)

    def limited_to(self, digests: Set[str]) -> Evaluation:
        """The same verdict, expiring only the images among `digests`."""
        return Evaluation(
            tuple(
                replace(
                    outcome,
                    expired=tuple(i for i in outcome.expired if i.digest in digests),
                )
                for outcome in self.outcomes
            )
        )


def evaluate(policy: Policy, images: Iterable[Image], now: datetime) -> Evaluation:
    """Which images `policy` expires at `now`, and by which rule.

    The answer depends only on the set of images, not on their order: push
    times that tie are ordered by digest.
    """
    ordered = _oldest_first(images)
    picked = {rule.priority: _picked(rule, ordered, now) for rule in policy.rules}

    expired: dict[int, list[Image]] = {rule.priority: [] for rule in policy.rules}
    kept: dict[int, list[Image]] = {rule.priority: [] for rule in policy.rules}
    for image in ordered:
        owner = _owner(policy.rules, image, picked)
        if owner is None:
            continue
        expires = owner.action == EXPIRE and image.digest in picked[owner.priority]
        (expired if expires else kept)[owner.priority].append(image)

    return Evaluation(
        tuple(
            RuleOutcome(rule, tuple(expired[rule.priority]), tuple(kept[rule.priority]))
            for rule in policy.rules
        )
    )


def _oldest_first(images: Iterable[Image]) -> list[Image]:
    ordered = sorted(images, key=lambda image: (image.pushed_at, image.digest))
    for older, newer in zip(ordered, ordered[1:], strict=False):
        if older.digest == newer.digest:
            raise ValueError(f"image {older.digest} is listed more than once")
    return ordered


def _picked(rule: Rule, ordered: Sequence[Image], now: datetime) -> frozenset[str]:
    """The digests a rule's count or age picks among the images its tags select.

    An expire rule expires what it picks; a keep rule keeps what it does not.
    Each rule sees every image, whatever the other rules do with them.
    """
    selection = rule.selection
    selected = [image for image in ordered if selection.selects(image.tags)]

    if selection.count_type == IMAGE_COUNT:
        beyond = max(len(selected) - selection.count_number, 0)
        return frozenset(image.digest for image in selected[:beyond])

    # "Older than countNumber days": an image pushed exactly that long ago
    # stays, as image E does in the guide's example that combines all types.
    limit = _days(selection.count_number)
    return frozenset(
        image.digest
        for image in selected
        if now - _age_reference(image, selection.count_type) > limit
    )


def _days(count: int) -> timedelta:
    """`count` days, bounded to what timedelta holds.

    No two datetimes lie further apart than the bound, so clamping changes no
    comparison; it only keeps a rule built without `policy_from_json` from
    raising OverflowError in the middle of a run.
    """
    bound = timedelta.max.days
    return timedelta(days=max(-bound, min(count, bound)))


def _age_reference(image: Image, count_type: str) -> datetime:
    if count_type == "sinceImagePulled":
        return image.last_used_at
    return image.pushed_at


def _owner(
    rules: Sequence[Rule], image: Image, picked: Mapping[int, frozenset[str]]
) -> Rule | None:
    """The first rule that claims the image; no later rule may expire it."""
    for rule in rules:
        if not rule.selection.selects(image.tags):
            continue
        if rule.action == KEEP and image.digest in picked[rule.priority]:
            continue
        return rule
    return None
