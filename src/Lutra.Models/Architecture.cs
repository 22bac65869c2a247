namespace Lutra.Models;

/// <summary>How RoPE pairs the dimensions of a head (formats.md §5.3).</summary>
public enum RopeKind
{
    /// <summary>Adjacent pairs (v[2i], v[2i+1]); llama GGUFs, whose converter permuted Q/K rows for it.</summary>
    Normal,

    /// <summary>Half-split pairs (v[i], v[i + n_rot/2]); qwen2.</summary>
    NeoX,
}

/// <summary>What distinguishes one supported transformer architecture from another: one row per architecture.</summary>
/// <param name="Name">The <c>general.architecture</c> value.</param>
/// <param name="Rope">RoPE pairing.</param>
/// <param name="QkvBiasRequired">Q/K/V projections carry biases that must be present (qwen2).</param>
public sealed record Architecture(string Name, RopeKind Rope, bool QkvBiasRequired)
{
    public static readonly Architecture Llama = new("llama", RopeKind.Normal, QkvBiasRequired: false);
    public static readonly Architecture Qwen2 = new("qwen2", RopeKind.NeoX, QkvBiasRequired: true);

    private static readonly Architecture[] Supported = [Llama, Qwen2];

    /// <summary>The row for <paramref name="name"/>, or a NotSupportedException that names it and lists what is supported.</summary>
    public static Architecture Get(string? name)
    {
        if (string.IsNullOrEmpty(name))
            throw new NotSupportedException("the model has no 'general.architecture' key; cannot tell how to run it");
        foreach (var a in Supported)
        {
            if (a.Name == name)
                return a;
        }
        throw new NotSupportedException(
            $"model architecture '{name}' is not supported (supported: {string.Join(", ", Supported.Select(a => a.Name))})");
    }
}
