"""Reporting for operators and auditors: ``rotation audit``.

* :mod:`~rotation.reporting.audit_report`: what the audit reads and the report built from it (JSON
  schema ``schemas/audit.schema.json``);
* :mod:`~rotation.reporting.policy_drift`: Vault ACL policies and IAM role policies in place vs. expected;
* :mod:`~rotation.reporting.vault_audit_log`: anomalies in a Vault file audit device's log;
* :mod:`~rotation.reporting.render`: terminal table, JSON, self-contained HTML with SVG charts;
* :mod:`~rotation.reporting.command`: the click command, added to ``rotation`` in :mod:`rotation.cli`.
"""
