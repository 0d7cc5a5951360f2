"""Seed 50 demo items so a plain `migrate` yields a usable catalog."""

from decimal import Decimal

from django.db import migrations

ITEM_COUNT = 50


def seed_names():
    return [f"Item {n:02d}" for n in range(1, ITEM_COUNT + 1)]


def create_items(apps, schema_editor):
    # Use the historical model, as the current one may have drifted from this migration.
    Item = apps.get_model("catalog", "Item")
    Item.objects.bulk_create(
        Item(name=name, price=Decimal(n) + Decimal("0.99"), description=f"Demo item number {n}.")
        for n, name in enumerate(seed_names(), start=1)
    )


def delete_items(apps, schema_editor):
    Item = apps.get_model("catalog", "Item")
    Item.objects.filter(name__in=seed_names()).delete()


class Migration(migrations.Migration):
    dependencies = (("catalog", "0001_initial"),)

    operations = (migrations.RunPython(create_items, delete_items),)
