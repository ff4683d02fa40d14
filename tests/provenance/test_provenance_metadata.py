"""XMP, EXIF and PNG-text evidence on fixture images the tests write themselves."""

from __future__ import annotations

from PIL import Image

from apncli.provenance import read_provenance
from apncli.provenance.reader import NOTE_ABSENT, NOTE_CAMERA, NOTE_DECLARED

A1111 = ("a cat in a hat\nNegative prompt: blurry\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1, "
         "Size: 512x512, Model: sd_xl_base_1.0")


def _items(prov, source):
    return [item for item in prov.items if item.source == source]


def test_xmp_iptc_digital_source_type_attribute_declares_ai(write_jpeg, xmp_packet, iptc_ai):
    path = write_jpeg(xmp=xmp_packet(f'Iptc4xmpExt:DigitalSourceType="{iptc_ai}" xmp:CreatorTool="Foo 1.0">'))
    prov = read_provenance(path)
    assert prov.summary == "declared-ai"
    dst = [i for i in _items(prov, "xmp") if i.field == "Iptc4xmpExt:DigitalSourceType"]
    assert [(i.value, i.indicates) for i in dst] == [(iptc_ai, "declared-ai")]
    tool = [i for i in _items(prov, "xmp") if i.field == "xmp:CreatorTool"]
    assert tool[0].value == "Foo 1.0" and tool[0].indicates is None


def test_xmp_element_form_with_rdf_resource_and_editor_history(write_jpeg, xmp_packet):
    event = '<rdf:li stEvt:action="saved" stEvt:softwareAgent="Adobe Photoshop 25.0 (Windows)"/>'
    body = (
        ' xmlns:xmpMM="http://ns.adobe.com/xap/1.0/mm/"'
        ' xmlns:stEvt="http://ns.adobe.com/xap/1.0/sType/ResourceEvent#">'
        '<Iptc4xmpExt:DigitalSourceType rdf:resource="http://cv.iptc.org/newscodes/digitalsourcetype/'
        'compositeWithTrainedAlgorithmicMedia"/>'
        '<xmp:CreatorTool>Pixelmator Pro 3.5</xmp:CreatorTool>'
        f"<xmpMM:History><rdf:Seq>{event}{event}</rdf:Seq></xmpMM:History>"
    )
    prov = read_provenance(write_jpeg(xmp=xmp_packet(body)))
    assert [(i.field, i.indicates) for i in _items(prov, "xmp")] == [
        ("Iptc4xmpExt:DigitalSourceType", "declared-ai"),
        ("xmp:CreatorTool", "declared-edited"),
        ("stEvt:softwareAgent", "declared-edited"),  # repeated history entries reported once
    ]
    assert prov.summary == "declared-ai"


def test_xmp_digital_capture_counts_as_camera(write_jpeg, xmp_packet):
    body = 'Iptc4xmpExt:DigitalSourceType="http://cv.iptc.org/newscodes/digitalsourcetype/digitalCapture">'
    assert read_provenance(write_jpeg(xmp=xmp_packet(body))).summary == "camera-metadata"


def test_exif_make_model_is_camera_metadata(write_jpeg):
    exif = Image.Exif()
    exif[0x010F], exif[0x0110] = "Canon", "EOS R5"
    exif.get_ifd(0x8769)[0x9003] = "2024:05:01 10:00:00"
    prov = read_provenance(write_jpeg(exif=exif))
    assert {(i.field, i.value, i.indicates) for i in _items(prov, "exif")} == {
        ("Make", "Canon", "camera-metadata"), ("Model", "EOS R5", "camera-metadata"),
        ("DateTimeOriginal", "2024:05:01 10:00:00", None)}
    assert prov.summary == "camera-metadata"
    assert NOTE_CAMERA in prov.notes and NOTE_ABSENT not in prov.notes


def test_exif_editor_software_beats_camera(write_jpeg):
    exif = Image.Exif()
    exif[0x010F], exif[0x0131] = "NIKON", "GIMP 2.10.36"
    prov = read_provenance(write_jpeg(exif=exif))
    assert prov.summary == "declared-edited"
    assert any(i.field == "Software" and i.indicates == "declared-edited" for i in prov.items)


def test_exif_generator_software_and_usercomment_parameters(write_jpeg):
    exif = Image.Exif()
    exif[0x0131] = "Midjourney"
    assert read_provenance(write_jpeg("mj.jpg", exif=exif)).summary == "declared-ai"
    exif = Image.Exif()
    exif.get_ifd(0x8769)[0x9286] = b"UNICODE\0" + A1111.encode("utf-16-be")
    prov = read_provenance(write_jpeg("a1111.jpg", exif=exif))
    comment = [i for i in prov.items if i.field == "UserComment"]
    assert comment[0].value.startswith("a cat in a hat") and comment[0].indicates == "declared-ai"


def test_png_text_parameters_declare_ai(write_png):
    prov = read_provenance(write_png(texts=(("tEXt", "parameters", A1111), ("tEXt", "Title", "holiday"))))
    texts = {i.field: i for i in _items(prov, "png-text")}
    assert texts["parameters"].value == A1111 and texts["parameters"].indicates == "declared-ai"
    assert texts["Title"].indicates is None
    assert prov.summary == "declared-ai"


def test_png_compressed_itxt_and_ztxt_comfyui(write_png):
    workflow = '{"3": {"class_type": "KSampler", "inputs": {"seed": 5, "steps": 20}}}'
    prov = read_provenance(write_png(texts=(("iTXt", "prompt", workflow), ("zTXt", "workflow", workflow))))
    assert {(i.field, i.value, i.indicates) for i in _items(prov, "png-text")} == {
        ("prompt", workflow, "declared-ai"), ("workflow", workflow, "declared-ai")}


def test_png_long_value_is_truncated_and_xmp_itxt_is_parsed(write_png, xmp_packet, iptc_ai):
    xmp = xmp_packet(f'Iptc4xmpExt:DigitalSourceType="{iptc_ai}">').decode()
    texts = (("tEXt", "Comment", "x" * 5000), ("iTXt", "XML:com.adobe.xmp", xmp))
    prov = read_provenance(write_png(texts=texts))
    comment = next(i for i in prov.items if i.field == "Comment")
    assert comment.truncated and len(comment.value) == 2000
    assert comment.to_dict()["truncated"] is True
    assert [i.source for i in prov.items if i.indicates == "declared-ai"] == ["xmp"]


def test_png_exif_chunk_and_generator_software_key(write_png):
    exif = Image.Exif()
    exif[0x010F] = "Apple"
    prov = read_provenance(write_png(texts=(("tEXt", "Software", "NovelAI"),), exif=exif))
    assert {(i.source, i.field, i.indicates) for i in prov.items} == {
        ("exif", "Make", "camera-metadata"), ("png-text", "Software", "declared-ai")}
    assert prov.summary == "declared-ai"


def test_plain_image_says_absence_proves_nothing(write_jpeg):
    prov = read_provenance(write_jpeg())
    assert prov.items == [] and prov.summary == "none"
    assert prov.notes[0] == NOTE_DECLARED and NOTE_ABSENT in prov.notes
