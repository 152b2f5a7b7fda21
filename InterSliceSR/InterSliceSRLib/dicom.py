"""DICOM on the Slicer side (Qt-free): what the input's DICOM header said, and how the result is
marked so that Slicer's DICOM export can never write it as an acquired series.

In: a volume loaded by Slicer's DICOM module carries the node attribute "DICOM.instanceUIDs"
(its SOP instance UIDs, space-separated); the DICOM database maps one to its file
(``fileForInstance``), whose header gives SliceThickness (0018,0050), SpacingBetweenSlices
(0018,0088) and the series description. The temporary NRRD the engine reads has none of them,
so the logic passes the thickness as ``--thickness`` and says so in the log.

Out: the result node's name says it was synthesised, its description holds the provenance, and
the attributes Slicer's DICOM export reads ("DICOM." + tag name, on the node and on its
subject-hierarchy item) give ImageType DERIVED\\SECONDARY, a SeriesDescription ending
"InterSliceSR synthesised" and the DerivationDescription; the export makes a new
SeriesInstanceUID, and the result sits in the input's study (logic.placeBeside).
"""
from __future__ import annotations

from dataclasses import dataclass

from intersr import protocol

INSTANCE_UIDS_ATTRIBUTE = "DICOM.instanceUIDs"
DICOM_ATTRIBUTE_PREFIX = "DICOM."
RESULT_NAME_SUFFIX = f" ({protocol.SYNTHESISED})"


@dataclass(frozen=True)
class DicomFacts:
    file: str
    slice_thickness: float | None = None
    spacing_between_slices: float | None = None
    series_description: str = ""

    def describe(self) -> str:
        def mm(value):
            return "absent" if value is None else f"{value:g} mm"

        label = f" '{self.series_description}'" if self.series_description else ""
        return (f"Input from DICOM{label}: SliceThickness {mm(self.slice_thickness)}, "
                f"SpacingBetweenSlices {mm(self.spacing_between_slices)}")


def _number(value) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if number > 0 and number == number and number != float("inf") else None


def default_database():
    """Slicer's DICOM database (None outside the application or before it is opened)."""
    try:
        import slicer
    except ImportError:  # pragma: no cover - slicer-core is a test dependency
        return None
    return getattr(slicer, "dicomDatabase", None)


def dicomFacts(node, database=None) -> DicomFacts | None:
    """The DICOM header facts of a node loaded from DICOM; None when it was not (or its files
    are gone). Raises nothing: a header that cannot be read gives None."""
    uids = (node.GetAttribute(INSTANCE_UIDS_ATTRIBUTE) or "").split()
    database = database if database is not None else default_database()
    if not uids or database is None:
        return None
    try:
        path = database.fileForInstance(uids[0])
    except Exception:
        return None
    if not path:
        return None
    try:
        import pydicom  # bundled with Slicer (its DICOM module)

        header = pydicom.dcmread(path, stop_before_pixels=True,
                                 specific_tags=["SliceThickness", "SpacingBetweenSlices",
                                                "SeriesDescription"])
    except Exception:
        return None
    return DicomFacts(file=str(path),
                      slice_thickness=_number(header.get("SliceThickness")),
                      spacing_between_slices=_number(header.get("SpacingBetweenSlices")),
                      series_description=str(header.get("SeriesDescription") or "").strip())


def resultName(scene, inputName: str) -> str:
    """'<input> (InterSliceSR synthesised)', made unique in the scene."""
    return scene.GenerateUniqueName(inputName + RESULT_NAME_SUFFIX)


def exportAttributes(inputName: str, provenance: dict, seriesDescription: str = "") -> dict:
    """The DICOM tags Slicer's export should write for the result ("DICOM." + tag name)."""
    return {
        DICOM_ATTRIBUTE_PREFIX + "ImageType": protocol.DICOM_IMAGE_TYPE,
        DICOM_ATTRIBUTE_PREFIX + "SeriesDescription":
            protocol.series_description(seriesDescription, inputName),
        DICOM_ATTRIBUTE_PREFIX + "DerivationDescription":
            protocol.derivation_description(provenance),
    }


def markForExport(node, attributes: dict) -> None:
    """Set the export attributes on the node and on its subject-hierarchy item."""
    for name, value in attributes.items():
        node.SetAttribute(name, value)
    scene = node.GetScene()
    if scene is None:
        return
    import slicer

    shNode = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    if shNode is None:
        return
    item = shNode.GetItemByDataNode(node)
    if item == shNode.GetInvalidItemID():
        return
    for name, value in attributes.items():
        shNode.SetItemAttribute(item, name, value)
