"""Healthcare: patients, doctors, clinics, appointments, prescriptions and drugs."""

from __future__ import annotations

from astra_synth.procedural import names as n
from astra_synth.procedural.domains.common import LATEST, PHONE, street, titled
from astra_synth.procedural.schema import Attr, Domain, Key, Kind, Link

HEALTHCARE = Domain(
    "healthcare",
    (
        Kind(
            "clinic",
            "CLN",
            "get_clinic",
            8,
            find_tool="find_clinic",
            key=titled(("Medical Centre", "Clinic", "Health Centre")),
            attrs=(
                PHONE,
                Attr("street_address", "street address", street),
                Attr("beds", "number of beds", n.integer(20, 600)),
            ),
        ),
        Kind(
            "doctor",
            "DOC",
            "get_doctor",
            35,
            find_tool="find_doctor",
            key=Key("full_name", "full name", "Dr. {key}", n.full_name_key, n.full_name_variants),
            attrs=(
                Attr(
                    "specialty",
                    "specialty",
                    n.choice(
                        (
                            "cardiology",
                            "dermatology",
                            "neurology",
                            "paediatrics",
                            "oncology",
                            "orthopaedics",
                            "general practice",
                        )
                    ),
                ),
                Attr("license_number", "licence number", n.code("MD", 6)),
                PHONE,
                Attr(
                    "years_in_practice",
                    "years in practice",
                    n.integer(1, 40),
                    answerable=False,
                    ranking=("most experienced", "least experienced"),
                ),
            ),
            links=(
                Link("clinic_id", "clinic", "clinic", ("doctor", "at {np}"), "list_clinic_doctors"),
            ),
        ),
        Kind(
            "patient",
            "PAT",
            "get_patient",
            80,
            find_tool="find_patient",
            key=Key(
                "full_name", "full name", "the patient {key}", n.full_name_key, n.full_name_variants
            ),
            attrs=(
                Attr(
                    "date_of_birth", "date of birth", n.birth_day(), ranking=("youngest", "oldest")
                ),
                Attr(
                    "blood_type",
                    "blood type",
                    n.choice(("A+", "A-", "B+", "B-", "AB+", "AB-", "O+")),
                ),
                Attr("insurance_id", "insurance id", n.code("INS", 7)),
            ),
            links=(
                Link(
                    "primary_doctor_id",
                    "doctor",
                    "primary doctor",
                    ("patient", "under the care of {np}"),
                    "list_doctor_patients",
                ),
            ),
        ),
        Kind(
            "drug",
            "DRG",
            "get_drug",
            30,
            find_tool="find_drug",
            key=Key("name", "name", "the drug {key}", n.drug_key, n.drug_variants),
            attrs=(
                Attr(
                    "drug_class",
                    "drug class",
                    n.choice(
                        (
                            "ACE inhibitor",
                            "statin",
                            "antibiotic",
                            "SSRI",
                            "antihistamine",
                            "anticoagulant",
                        )
                    ),
                ),
                Attr("manufacturer", "manufacturer", n.words(n.brand_word, "{} Pharma")),
                Attr("unit_price_usd", "unit price (USD)", n.price(1, 400), money=True),
            ),
        ),
        Kind(
            "appointment",
            "APT",
            "get_appointment",
            attrs=(
                Attr("scheduled_on", "date", n.day(), ranking=LATEST),
                Attr(
                    "reason",
                    "reason",
                    n.choice(
                        (
                            "annual check-up",
                            "follow-up",
                            "vaccination",
                            "lab review",
                            "consultation",
                            "physiotherapy",
                        )
                    ),
                ),
                Attr("room", "room", n.code("RM", 3)),
                Attr(
                    "fee_usd",
                    "fee (USD)",
                    n.price(40, 900),
                    money=True,
                    ranking=("most expensive", "cheapest"),
                ),
            ),
            links=(
                Link(
                    "patient_id",
                    "patient",
                    "patient",
                    ("appointment", "of {np}"),
                    "list_patient_appointments",
                    per_parent=(2, 5),
                ),
                Link(
                    "doctor_id",
                    "doctor",
                    "attending doctor",
                    ("appointment", "with {np}"),
                    "list_doctor_appointments",
                ),
            ),
        ),
        Kind(
            "prescription",
            "RXN",
            "get_prescription",
            attrs=(
                Attr(
                    "dosage_mg",
                    "dosage in mg",
                    n.amount(5, 1000, 5),
                    ranking=("highest-dose", "lowest-dose"),
                ),
                Attr(
                    "instructions",
                    "instructions",
                    n.choice(
                        ("once daily", "twice daily", "every 8 hours", "at bedtime", "as needed")
                    ),
                ),
                Attr("refills", "number of refills", n.integer(0, 5), answerable=False),
            ),
            links=(
                Link(
                    "appointment_id",
                    "appointment",
                    "appointment",
                    ("prescription", "issued at {np}"),
                    "list_appointment_prescriptions",
                    per_parent=(1, 3),
                ),
                Link("drug_id", "drug", "prescribed drug"),
            ),
        ),
    ),
)
