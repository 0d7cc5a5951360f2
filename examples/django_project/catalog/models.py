from django.db import models


class Item(models.Model):
    name = models.CharField(max_length=100)
    price = models.DecimalField(max_digits=8, decimal_places=2)
    created = models.DateTimeField(auto_now_add=True)
    description = models.TextField(blank=True)

    class Meta:
        ordering = ("id",)

    def __str__(self):
        return self.name

    def as_dict(self):
        """JSON-friendly representation used by the API views."""
        return {
            "id": self.pk,
            "name": self.name,
            "price": str(self.price),
            "created": self.created.isoformat(),
        }
