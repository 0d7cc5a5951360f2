from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

USERNAME = "admin"
PASSWORD = "admin-password-123"
EMAIL = "admin@example.com"


class Command(BaseCommand):
    help = f"Create the demo superuser {USERNAME!r} (password {PASSWORD!r}) unless it already exists."

    def handle(self, *args, **options):
        User = get_user_model()
        if User.objects.filter(username=USERNAME).exists():
            self.stdout.write(f"Superuser {USERNAME!r} already exists.")
            return
        User.objects.create_superuser(USERNAME, EMAIL, PASSWORD)
        self.stdout.write(self.style.SUCCESS(f"Created superuser {USERNAME!r}."))
