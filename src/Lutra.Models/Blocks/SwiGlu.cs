namespace Lutra.Models.Blocks;

/// <summary>The gated FFN activation of llama (LLM_FFN_SILU, LLM_FFN_PAR): gate ← silu(gate) ⊙ up.</summary>
public static class SwiGlu
{
    public static void Apply(Span<float> gate, ReadOnlySpan<float> up)
    {
        for (var i = 0; i < gate.Length; i++)
        {
            var g = gate[i];
            gate[i] = g / (1f + MathF.Exp(-g)) * up[i];
        }
    }
}
