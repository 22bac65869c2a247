namespace Lutra.Models.Blocks;

/// <summary>RMSNorm with llama.cpp CPU semantics (formats.md §5.2).</summary>
public static class RmsNorm
{
    /// <summary>y = x / sqrt(mean(x²) + eps) ⊙ weight, for one row.</summary>
    public static void Apply(ReadOnlySpan<float> x, ReadOnlySpan<float> weight, float eps, Span<float> y)
    {
        // Squares in f32, summed in double, as ggml_compute_forward_rms_norm_f32 does.
        var sum = 0.0;
        for (var i = 0; i < x.Length; i++)
            sum += x[i] * x[i];
        var mean = (float)(sum / x.Length);
        var scale = 1.0f / MathF.Sqrt(mean + eps);
        // The norm and the weight multiply are separate ggml ops: round after each.
        for (var i = 0; i < x.Length; i++)
            y[i] = x[i] * scale * weight[i];
    }
}
