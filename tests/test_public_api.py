import jaxconvac


def test_all_is_sorted_and_exported():
    assert jaxconvac.__all__ == sorted(jaxconvac.__all__)
    for name in jaxconvac.__all__:
        assert getattr(jaxconvac, name) is not None, name


def test_issue_names_are_public():
    required = {
        "generalized_tensor_product",
        "matricize",
        "numerical_rank",
        "singular_values",
        "exact_rank",
        "ModeTree",
        "init_decomposition",
        "coefficient_tensor",
        "evaluate",
    }
    assert required <= set(jaxconvac.__all__)


def test_public_functions_are_documented():
    for name in jaxconvac.__all__:
        doc = getattr(jaxconvac, name).__doc__
        assert doc and len(doc.strip()) > 40, name


def test_nn_all_is_sorted_and_exported():
    from jaxconvac import nn

    assert nn.__all__ == sorted(nn.__all__)
    for name in nn.__all__:
        assert getattr(nn, name).__doc__, name
