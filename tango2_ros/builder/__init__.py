"""The offline model builder (`tango2 build RECIPE.yaml`): fine-tune, export, quantise, evaluate, gate, sign, publish."""
