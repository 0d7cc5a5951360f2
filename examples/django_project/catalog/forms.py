from django import forms


class MessageForm(forms.Form):
    name = forms.CharField(max_length=100)
    message = forms.CharField(max_length=2000, widget=forms.Textarea)


class UploadForm(forms.Form):
    # Empty files are legitimate input for server body-handling tests.
    file = forms.FileField(allow_empty_file=True)
    note = forms.CharField(max_length=1000, required=False)
