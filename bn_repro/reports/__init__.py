"""Tables, figures and summary files made from finished runs."""
