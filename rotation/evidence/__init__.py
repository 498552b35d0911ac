"""SOC 2 evidence: the recorder steps write to, and the report, hash chain, OSCAL and signature built from it.

Steps use the `evidence` fixture (rotation_pytest.evidence); code outside pytest can use `Recorder` directly."""

from rotation.evidence.recorder import EvidenceItem, Population, Recorder, ScenarioRecord, StepRecord

__all__ = ["EvidenceItem", "Population", "Recorder", "ScenarioRecord", "StepRecord"]
