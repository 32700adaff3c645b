"""Small deterministic text tools the task families share: cleaning, sentences, cues, roles.

Everything here is rule-based on purpose: the extractive generator must be reproducible and
offline, and every answer it builds is cut from the section's own sentences, so these functions
only *select* text, they never reword it (except `clean_inline`, which only deletes markup).
"""

from __future__ import annotations

import re

# Lowercase alphanumeric runs (Unicode letters and digits): the unit of faithfulness checks.
_TOKEN = re.compile(r"[^\W_]+")

STOP_WORDS = frozenset(
    """a about above after again against all also am an and any are aren as at be because been
    before being below between both but by can cannot could couldn d did didn do does doesn doing
    don down during each either else etc ever every few for from further had hadn has hasn have
    haven having he her here hers herself him himself his how however i if in into is isn it its
    itself just let ll m may me might more most must mustn my myself need needn no nor not now o
    of off on once one only or other our ours ourselves out over own per please re s same shall
    shan she should shouldn so some such t than that the their theirs them themselves then there
    these they this those through to too under until up upon us ve very via was wasn we were
    weren what when where whether which while who whom whose why will with within without won
    would wouldn y yet you your yours yourself yourselves""".split()
)


def tokens(text: str) -> list[str]:
    """Lowercase alphanumeric tokens of `text`."""
    return _TOKEN.findall(text.lower())


def content_words(text: str) -> list[str]:
    """Tokens of `text` that carry meaning (not stop words, not single characters)."""
    return [t for t in tokens(text) if t not in STOP_WORDS and len(t) > 1]


# --- cleaning -------------------------------------------------------------------------------

_IMAGE = re.compile(r"!\[([^\]]*)\]\([^)]*\)")
_LINK = re.compile(r"\[([^\]]+)\]\([^()]*(?:\([^()]*\)[^()]*)*\)")
_REF_LINK = re.compile(r"\[([^\]]+)\]\[[^\]]*\]")
_AUTOLINK = re.compile(r"<(https?://[^>\s]+|[\w.+-]+@[\w.-]+)>")
_ATTR_LIST = re.compile(r"\{[:#.][^}]*\}")
_TEMPLATE = re.compile(r"\{%.*?%\}|\{\{.*?\}\}", re.DOTALL)
_HTML_TAG = re.compile(r"</?[a-zA-Z][^<>]*>")
_ESCAPE = re.compile(r"\\([\\`*_{}\[\]()#+\-.!<>|])")
_STRONG = re.compile(r"(\*\*|__)(?=\S)(.+?)(?<=\S)\1")
_EM_STAR = re.compile(r"(?<![\w*])\*(?=\S)([^*\n]+?)(?<=\S)\*(?![\w*])")
_EM_UNDER = re.compile(r"(?<![\w_])_(?=\S)([^_\n]+?)(?<=\S)_(?![\w_])")
_FOOTNOTE = re.compile(r"\[\^[^\]]*\]")
_ADMONITION = re.compile(r'^\s*(?:!!!|\?\?\?\+?)\s*\w+(?:\s+"([^"]*)")?\s*', re.MULTILINE)
_STRAY_EMPHASIS = re.compile(r"(?<![\w*_])[*_]+(?=\w)|(?<=\w)[*_]+(?![\w*_])")
_SPACE = re.compile(r"\s+")
_SPACE_BEFORE_PUNCT = re.compile(r"\s+([,.;:!?])")


def clean_inline(text: str) -> str:
    """Drop inline Markdown/HTML markup and collapse whitespace; the words themselves stay.

    Answers are cut from section text, and a model should learn to answer in prose, not in
    link syntax or template tags. Only deletions happen here, so a cleaned sentence never
    contains a word its source does not.
    """
    text = _TEMPLATE.sub(" ", text)
    text = _ATTR_LIST.sub(" ", text)
    text = _ADMONITION.sub(lambda m: (m.group(1) + ". ") if m.group(1) else "", text)
    text = _IMAGE.sub(r"\1", text)
    text = _LINK.sub(r"\1", text)
    text = _REF_LINK.sub(r"\1", text)
    text = _FOOTNOTE.sub("", text)
    text = _AUTOLINK.sub(r"\1", text)
    text = _HTML_TAG.sub(" ", text)
    text = _ESCAPE.sub(r"\1", text)
    text = _STRONG.sub(r"\2", text)
    text = _EM_STAR.sub(r"\1", text)
    text = _EM_UNDER.sub(r"\1", text)
    text = _STRAY_EMPHASIS.sub("", text)  # an emphasis cut in two by a sentence split
    text = _SPACE.sub(" ", text).strip()
    text = _SPACE_BEFORE_PUNCT.sub(r"\1", text)
    return text.strip(" -*")


# --- sentences ------------------------------------------------------------------------------

_ABBREVIATIONS = frozenset(
    "e.g i.e etc vs mr mrs ms dr no nos st inc ltd co fig sec approx cf al dept est ref p pp".split()
)
_SENT_END = re.compile(r"[.!?][\"'”’)\]]*\s+(?=[\"'“‘(\[]?[A-Z0-9])")


def split_sentences(text: str) -> list[str]:
    """Split a paragraph into sentences at . ! ? followed by a capital or digit.

    Abbreviations (e.g., i.e., etc.) and single initials ("U.S.") do not end a sentence.
    """
    text = _SPACE.sub(" ", text).strip()
    out: list[str] = []
    start = 0
    for m in _SENT_END.finditer(text):
        before = text[start : m.start()]
        last = before.rsplit(" ", 1)[-1].lower().rstrip(".").lstrip("([{\"'“‘")
        if last in _ABBREVIATIONS or (len(last) == 1 and last.isalpha()):
            continue
        out.append(text[start : m.end()].strip())
        start = m.end()
    tail = text[start:].strip()
    if tail:
        out.append(tail)
    return [s for s in out if s]


def word_count(text: str) -> int:
    return len(text.split())


# --- cues -----------------------------------------------------------------------------------

_NUMBER_WORD = (
    r"(?:\d+(?:[.,]\d+)?|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|"
    r"fifteen|twenty|thirty|forty|fifty|sixty|ninety|a few|several|a|an)"
)
_UNIT = r"(?:business |working |calendar )?(?:seconds?|minutes?|mins?|hours?|hrs?|days?|weeks?|months?|years?|quarters?)"
DURATION = re.compile(rf"\b{_NUMBER_WORD}(?:[-\s]{_NUMBER_WORD})?[-\s]+{_UNIT}\b", re.IGNORECASE)
DEADLINE = re.compile(
    r"\b(?:within|no later than|by the end of|by end of|deadline|due|before(?=\s+\w)|prior to|"
    r"immediately|promptly|as soon as possible|asap|annually|yearly|quarterly|monthly|weekly|"
    r"daily|every (?:day|week|month|year|quarter)|at least once|each (?:day|week|month|year))\b",
    re.IGNORECASE,
)
AMOUNT = re.compile(
    r"(?:[$£€]\s?\d[\d,]*(?:\.\d+)?|\b\d[\d,]*(?:\.\d+)?\s?(?:%|percent|dollars|usd|gbp|eur|pounds)\b)",
    re.IGNORECASE,
)
OBLIGATION = re.compile(
    r"\b(?:must|must not|shall|required|requires|require|mandatory|never|always|"
    r"is not allowed|are not allowed|not permitted|prohibited|may not|have to|has to)\b",
    re.IGNORECASE,
)
APPROVAL = re.compile(r"\b(?:approv\w*|sign[- ]off|signs off|authori[sz]\w*|consent)\b", re.I)
RESPONSIBILITY = re.compile(
    r"\b(?:responsib\w*|accountable|owns?|in charge|coordinat\w*|handles?|manages?|leads?|"
    r"reviews?|decides?|determines?|escalat\w*|assign\w*|contact|notif\w*|report\w* to|ask)\b",
    re.IGNORECASE,
)
DEFINITION = re.compile(
    r"^(?:an?\s+|the\s+)?(?P<term>[A-Za-z][\w/&()' -]{1,60}?)\s+"
    r"(?:in our context\s+|in this context\s+|here\s+)?"
    r"(?:(?:is|are)\s+(?=(?:an?|the|any|one|when|where|used|defined|considered)\b)"
    r"|means|refers to|is defined as|are defined as|is called|describes)\s*"
    r"(?P<rest>.+)$",
    re.IGNORECASE,
)
CONDITION_LEAD = re.compile(
    r"^(?:if|when|whenever|in case(?! of)|in the event that|should you|once|after|before|where)\s+"
    r"(?P<cond>[^,;:]{6,160}?),\s*(?:then\s+)?(?P<action>.{6,})$",
    re.IGNORECASE,
)
CONDITION_TAIL = re.compile(
    r"^(?P<action>[A-Z][^,;:]{6,160}?)\s+(?:if|when|whenever|in case(?! of))\s+(?P<cond>[^,;:]{6,160}?)"
    r"[.!]?$",
)


def has_time(text: str) -> bool:
    return bool(DURATION.search(text) or DEADLINE.search(text))


def has_duration(text: str) -> bool:
    return bool(DURATION.search(text))


# --- roles ----------------------------------------------------------------------------------

# Head nouns that name a person or body who acts in a procedure.
PERSON_HEADS = frozenset(
    """manager managers supervisor supervisors lead leads director directors officer officers
    administrator administrators admin admins engineer engineers developer developers owner
    owners commander commanders employee employees contractor contractors reviewer reviewers
    approver approvers auditor auditors analyst analysts coordinator coordinators responder
    responders specialist specialists head chair liaison liaisons scribe scribes
    representative representatives agent agents technician technicians consultant consultants
    requester requesters requestor requestors sponsor sponsors steward stewards custodian
    custodians architect architects operator operators deputy president counsel ciso cto ceo
    cio coo cfo dpo qmo holder holders assignee assignees staff teammate teammates colleague
    colleagues member members manager's supervisor's user users customer customers vendor
    vendors purchaser purchasers designer designers worker workers volunteer volunteers
    secretary treasurer""".split()
)
GROUP_HEADS = frozenset(
    """team teams division department committee board desk group office unit function
    service-desk helpdesk""".split()
)
# Heads too vague to be a role on their own ("members", "users"): they need a qualifier.
WEAK_HEADS = frozenset(
    """member members user users customer customers staff worker workers team teams group
    office unit function head chair holder holders owner owners lead leads agent agents board
    desk""".split()
)
# Lowercase words that may qualify a role ("on-call engineer", "purchase card holder").
ROLE_MODIFIERS = frozenset(
    """incident security support service on-call oncall primary secondary backup purchase card
    project product it hr ops operations account line site system systems technical tech
    program quality compliance privacy data release deployment engineering regulatory hiring
    finance facilities people legal process document business budget change help
    information infrastructure network software hardware platform delivery design research
    responsible senior junior principal chief executive general designated relevant
    affected""".split()
)
_ROLE_WORD = re.compile(r"[^\W_][\w'’-]*")
_DETERMINERS = frozenset(
    "a an the your our their its his her my this that these those each every any some".split()
)


def find_roles(text: str) -> list[str]:
    """Role phrases named in `text`, in order of appearance, e.g. 'TTS Ops team', 'Tech Lead'.

    A role is a head noun from PERSON_HEADS/GROUP_HEADS extended to the left over capitalised
    words, acronyms and known modifiers; vague heads ('members') need such a qualifier.
    """
    words = [(m.group(0), m.start(), m.end()) for m in _ROLE_WORD.finditer(text)]
    found: list[str] = []
    seen: set[str] = set()
    i = 0
    while i < len(words):
        word = words[i][0]
        low = word.lower()
        if low not in PERSON_HEADS and low not in GROUP_HEADS:
            i += 1
            continue
        j = i
        while j > 0 and i - j < 3:
            prev = words[j - 1][0]
            gap = text[words[j - 1][2] : words[j][1]]
            if gap not in (" ", "-"):
                break
            plow = prev.lower()
            if plow in _DETERMINERS or plow in STOP_WORDS:
                break
            is_name = prev[0].isupper() and not _is_sentence_start(text, words[j - 1][1])
            if not (is_name or prev.isupper() or plow in ROLE_MODIFIERS):
                break
            j -= 1
        # "team member", "team lead": let the compound extend to the right.
        end = i
        if end + 1 < len(words) and words[end + 1][0].lower() in PERSON_HEADS:
            if text[words[end][2] : words[end + 1][1]] == " ":
                end += 1
        end = _extend_of_phrase(text, words, end)
        if j == i and end == i and low in WEAK_HEADS:
            i += 1
            continue
        phrase = text[words[j][1] : words[end][2]]
        key = phrase.lower()
        if key not in seen:
            seen.add(key)
            found.append(phrase)
        i = end + 1
    return found


def _extend_of_phrase(text: str, words: list[tuple[str, int, int]], end: int) -> int:
    """'Director' + 'of Engineering' / 'Head' + 'of Software Development': take the of-phrase
    when it is made of capitalised words."""
    k = end + 1
    if k + 1 < len(words) and words[k][0] == "of" and words[k + 1][0][:1].isupper():
        last = k + 1
        while last + 1 < len(words) and last - k < 3 and words[last + 1][0][:1].isupper():
            if text[words[last][2] : words[last + 1][1]] != " ":
                break
            last += 1
        if all(text[words[j][2] : words[j + 1][1]] == " " for j in range(end, last)):
            return last
    return end


def _is_sentence_start(text: str, pos: int) -> bool:
    before = text[:pos].rstrip()
    return not before or before[-1] in ".!?:;\n"


def is_group_role(role: str) -> bool:
    return role.split()[-1].lower() in GROUP_HEADS


# --- verbs and titles -----------------------------------------------------------------------

# Verbs that start imperative procedure steps ("Submit the form", "Notify security").
IMPERATIVE_VERBS = frozenset(
    """accept access acknowledge activate add adjust agree alert allow apply approve archive
    arrange ask assess assign attach attend avoid back be book build calculate call cancel
    capture change charge check choose claim clean clear click close collect communicate
    complete configure confirm connect consider contact continue coordinate copy create
    deactivate decide declare define delete deliver deploy describe destroy determine disable
    discuss document download draft email enable encrypt ensure enter escalate establish
    evaluate examine export file fill find finish fix follow forward gather generate get give
    go grant hand handle identify implement include inform initiate install investigate invite
    issue join keep label leave list locate lock log look maintain make mark merge message
    monitor move name note notify obtain open order page pay perform place plan post prepare
    present print protect provide publish purchase push put raise reach read record reduce
    refer register reject release remove renew repeat replace report request require reset
    resolve respond restart restore return review revoke rotate run save schedule scan search
    secure select send set share shut sign start stop store submit switch take talk tell test
    track train transfer triage try turn update upload use validate verify visit wait wipe
    write type tap press paste navigate scroll head finalize announce appoint assemble contain
    cut delegate hold involve isolate liaise preserve understand think remember reply bring
    treat offer sync swap drop skip ship set tag plan stay hand reach double print look deal
    work receive pick wear carry""".split()
)
_GERUND_EXCEPTIONS = {"being": "be", "going": "go", "doing": "do", "dying": "die", "lying": "lie"}


def gerund_to_base(word: str) -> str | None:
    """'Making' -> 'make', 'Dealing' -> 'deal'; None unless the base is a known procedure verb."""
    low = word.lower()
    if low in _GERUND_EXCEPTIONS:
        return _GERUND_EXCEPTIONS[low]
    if not low.endswith("ing") or len(low) < 5:
        return None
    stem = low[:-3]
    candidates = [stem, stem + "e"]
    if len(stem) > 2 and stem[-1] == stem[-2]:
        candidates.insert(0, stem[:-1])
    for cand in candidates:
        if cand in IMPERATIVE_VERBS:
            return cand
    return None


# Verbs that are as often nouns ("Email Procedure", "Access Monitoring"): a title starting with
# one is read as an instruction only when an object follows ("Review your benefits").
NOUN_VERBS = frozenset(
    """access alert archive back call change charge check claim contact copy email file fix hand
    issue label list lock log mark message name note order page plan post print purchase record
    release report request reset review scan schedule search set share sign start stop store
    switch test track train transfer turn update upload use visit wait work document design
    return offer hold drop tag ship""".split()
)
_OBJECT_STARTERS = frozenset(
    """a an the your our their its my this that these those any all each every some it them
    up out in on off down over back""".split()
)


def verb_first(words: list[str]) -> bool:
    """Does a title's word list start with an instruction ('Review your benefits', 'Isolate
    affected instances'), rather than a noun ('Email procedure')?"""
    if len(words) < 2:
        return False
    first = words[0].lower()
    if first not in IMPERATIVE_VERBS:
        return False
    return first not in NOUN_VERBS or words[1].lower() in _OBJECT_STARTERS


_DOUBLING = frozenset(
    "get log plan put run set shut stop submit swap tag ship drop skip chat".split()
)


def gerund(verb: str) -> str:
    """'make' -> 'making', 'run' -> 'running', 'see' -> 'seeing' (for the verbs we know)."""
    if verb in _DOUBLING:
        return verb + verb[-1] + "ing"
    if verb.endswith("e") and not verb.endswith(("ee", "ye", "oe")) and verb != "be":
        return verb[:-1] + "ing"
    return verb + "ing"


def starts_imperative(text: str) -> bool:
    """Does the sentence start with a base-form procedure verb ('Submit ...', 'Please send ...')?"""
    words = tokens(text)
    if words[:1] == ["please"]:
        words = words[1:]
    if words[:1] in (["first"], ["then"], ["next"], ["finally"], ["also"]):
        words = words[1:]
    return bool(words) and words[0] in IMPERATIVE_VERBS


_NUMBERING = re.compile(
    r"^\s*(?:(?:section|step|part)\s+)?(?:\d+(?:\.\d+)*|[ivxlc]+|[a-z])[.)]?\s+", re.I
)
GENERIC_TITLES = frozenset(
    """overview purpose scope introduction background procedure procedures policy summary
    general definitions responsibilities roles notes references process steps requirements
    details guidance guidelines instructions appendix other misc miscellaneous context
    description objectives objective applicability setup issues checklist faq contacts
    resources examples tools training exceptions enforcement compliance glossary terms""".split()
)


def strip_numbering(title: str) -> str:
    """'3.1 Scope' -> 'Scope'; titles that are only a number stay as they are."""
    stripped = _NUMBERING.sub("", title, count=1).strip()
    return stripped if len(stripped) >= 3 else title.strip()


_QUESTION_WORDS = frozenset("what who when where why how which can do does is are should".split())


def title_phrase(title: str) -> str:
    """A section title for use inside a sentence ("Summarize <phrase> in 3 bullets").

    Only an ordinary first word is lowercased ("The ...", "Making ...", "Review ..."): any other
    capital may belong to a name ("Linux", "Exit Interview"). A verb-first title becomes "how to
    ..."; a question title is quoted as the section's name.
    """
    title = strip_numbering(clean_inline(title)).rstrip(" .:!")
    words = title.split()
    if not words:
        return title
    first = words[0].lower()
    if title.endswith("?") or (first in _QUESTION_WORDS and len(words) > 2):
        return f'the "{title}" section'
    if words[0][1:].islower() or len(words[0]) == 1:
        if verb_first(words):
            return " ".join([gerund(first), *words[1:]])
        if first in STOP_WORDS or gerund_to_base(first) or first.endswith("ing"):
            words[0] = first
    return " ".join(words)


def is_generic_title(title: str) -> bool:
    words = content_words(strip_numbering(title))
    return not words or (len(words) <= 2 and all(w in GENERIC_TITLES for w in words))


def article(phrase: str) -> str:
    """'a' or 'an' for a following phrase (by its first letter; acronyms by their sound)."""
    first = phrase.split()[0] if phrase.split() else ""
    if first.isupper() and len(first) > 1:
        return "an" if first[0] in "AEFHILMNORSX" else "a"
    return "an" if first[:1].lower() in "aeiou" else "a"


def to_first_person(clause: str) -> str:
    """'you have access to your laptop' -> 'I have access to my laptop' (for user questions)."""
    swaps = [
        (r"\byou are\b", "I am"),
        (r"\byou're\b", "I'm"),
        (r"\byou’re\b", "I'm"),
        (r"\byou were\b", "I was"),
        (r"\byou've\b", "I've"),
        (r"\byourself\b", "myself"),
        (r"\byours\b", "mine"),
        (r"\byour\b", "my"),
        (r"^you\b", "I"),
        (r"\b(and|or|if|when|that|because|but|so|once|where) you\b", r"\1 I"),
        (r"\byou\b", "me"),
    ]
    out = clause
    for pat, rep in swaps:
        out = re.sub(pat, rep, out, flags=re.IGNORECASE)
    return out
