"""Issue 20, item 8: a key record read from Vault is checked field by field before anything acts
on it; the error names the label and the field, never the value (it is a secret)."""

from __future__ import annotations

import pytest

from rotation.records import KeyState

GOOD = {"serial": 3, "value": "A" * 40, "rotation_id": "r3", "created_at": "2026-12-01T00:00:00+00:00",
        "key_id": "k3", "key_name": "secure-mail-api-dev-crm-3", "promoted_at": None, "disabled_at": None,
        "emergency": False}


@pytest.mark.parametrize("field,bad", [
    ("serial", "3"), ("serial", 0), ("serial", True), ("serial", None),
    ("value", "A" * 19), ("value", "A" * 129), ("value", "A" * 30 + " " + "A" * 9), ("value", "A" * 30 + "\n" * 10),
    ("value", 12345678901234567890123), ("value", "A" * 30 + "-" * 10), ("value", "\u00e9" * 25), ("rotation_id", ""), ("created_at", "tomorrow"), ("created_at", None),
    ("promoted_at", "soon"), ("key_id", 7), ("emergency", "yes"),
])
@pytest.mark.parametrize("label", ["current", "previous", "pending", "retired.0"])
def test_a_malformed_record_field_is_refused_naming_the_label_and_field(label, field, bad):
    rec = {**GOOD, field: bad}
    data = {"current": GOOD, "previous": None, "pending": None, "retired": []}
    if label == "retired.0":
        data["retired"] = [rec]
    else:
        data[label] = rec
    with pytest.raises(ValueError, match=rf"^{label.replace('.', '[.]')}[.]{field}: ") as err:
        KeyState.from_dict(data, 4)
    if isinstance(bad, str) and len(bad) > 8:
        assert bad not in str(err.value)


def test_a_record_that_is_not_an_object_is_refused():
    with pytest.raises(ValueError, match="^pending: must be an object"):
        KeyState.from_dict({"current": GOOD, "pending": "x"}, 1)
    with pytest.raises(ValueError, match="'retired' is a list"):
        KeyState.from_dict({"current": GOOD, "retired": {"a": 1}}, 1)


def test_a_well_formed_state_reads_back_for_contrast():
    st = KeyState.from_dict({"current": GOOD, "previous": {**GOOD, "serial": 2, "disabled_at": None},
                             "pending": None, "retired": []}, 4)
    assert st.current.serial == 3 and st.previous.serial == 2 and st.version == 4
