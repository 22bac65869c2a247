namespace Lutra.Core.Quants;

/// <summary>
/// Scalar reference kernels for every supported type: the semantics every fast kernel is tested against.
/// All spans hold whole blocks; <c>n</c> (element count) is a multiple of the type's block size.
/// The kernels themselves live per type (<c>Quants/&lt;Family&gt;/&lt;Type&gt;.cs</c>) and are found through the
/// type's row in <see cref="QuantTypes"/>; this class validates arguments once and dispatches.
/// </summary>
public static class QuantReference
{
    /// <summary>The activation format llama.cpp's CPU backend converts inputs to for this weight type (vec_dot_type).</summary>
    public static GgmlType ActivationType(GgmlType weightType) =>
        Kernels(weightType).ActivationType
        ?? throw new NotSupportedException($"type {QuantTypes.Get(weightType).Name} has no dot product");

    /// <summary>Bytes of one activation row of <paramref name="n"/> elements in <paramref name="activationType"/>.</summary>
    public static int ActivationRowBytes(GgmlType activationType, int n)
    {
        var info = QuantTypes.RequireSupported(activationType);
        RequireWholeBlocks(info, n, nameof(n));
        return checked((int)info.RowBytes(n));
    }

    /// <summary>Dequantizes <paramref name="dst"/>.Length elements from whole blocks in <paramref name="src"/>.</summary>
    public static void Dequantize(GgmlType type, ReadOnlySpan<byte> src, Span<float> dst)
    {
        var info = QuantTypes.RequireSupported(type);
        RequireWholeBlocks(info, dst.Length, nameof(dst));
        RequireBytes(info, src.Length, dst.Length, nameof(src));
        Kernels(type).Dequantize(src, dst);
    }

    /// <summary>
    /// Reference quantizer (llama.cpp's <c>quantize_row_*_ref</c> / llama-quantize without imatrix):
    /// <paramref name="src"/>.Length floats into whole blocks in <paramref name="dst"/>.
    /// </summary>
    public static void Quantize(GgmlType type, ReadOnlySpan<float> src, Span<byte> dst)
    {
        var info = QuantTypes.RequireSupported(type);
        RequireWholeBlocks(info, src.Length, nameof(src));
        RequireBytes(info, dst.Length, src.Length, nameof(dst));
        Kernels(type).Quantize(src, dst);
    }

    /// <summary>
    /// Converts one activation row to <paramref name="activationType"/> exactly as llama.cpp's x86 CPU build
    /// does before a dot product (Q8_0/Q8_1: id = 127/amax with round-half-even; Q8_K: the _ref quantizer;
    /// F16/BF16: round-to-nearest-even).
    /// </summary>
    public static void QuantizeActivations(GgmlType activationType, ReadOnlySpan<float> x, Span<byte> dst)
    {
        var info = QuantTypes.RequireSupported(activationType);
        var kernel = Kernels(activationType).QuantizeActivations
            ?? throw new NotSupportedException($"type {info.Name} is not an activation format");
        RequireWholeBlocks(info, x.Length, nameof(x));
        RequireBytes(info, dst.Length, x.Length, nameof(dst));
        kernel(x, dst);
    }

    /// <summary>
    /// Reference dot product of one weight row (<paramref name="n"/> elements of <paramref name="weightType"/>) with one
    /// activation row already converted to <see cref="ActivationType"/>.
    /// </summary>
    public static float Dot(GgmlType weightType, ReadOnlySpan<byte> weights, ReadOnlySpan<byte> activations, int n)
    {
        var info = QuantTypes.RequireSupported(weightType);
        var kernels = Kernels(weightType);
        var dot = kernels.Dot ?? throw new NotSupportedException($"type {info.Name} has no dot product");
        RequireWholeBlocks(info, n, nameof(n));
        RequireBytes(info, weights.Length, n, nameof(weights));
        RequireBytes(QuantTypes.Get(kernels.ActivationType!.Value), activations.Length, n, nameof(activations));
        return dot(weights, activations, n);
    }

    /// <summary>
    /// Weight row · plain f32 activations with dequantize-then-dot semantics (no activation quantization), summed
    /// in double: the "ideal" arithmetic reference mode compares against.
    /// </summary>
    public static float DotF32(GgmlType weightType, ReadOnlySpan<byte> weights, ReadOnlySpan<float> x, int n)
    {
        var info = QuantTypes.RequireSupported(weightType);
        RequireWholeBlocks(info, n, nameof(n));
        RequireBytes(info, weights.Length, n, nameof(weights));
        if (x.Length < n)
            throw new ArgumentException($"{n} activations needed, {x.Length} given", nameof(x));
        var dequantize = Kernels(weightType).Dequantize;

        // Dequantize 256 elements (whole blocks of every type) at a time into a stack buffer: no allocation.
        const int chunk = 256;
        Span<float> w = stackalloc float[chunk];
        var sum = 0.0;
        for (var start = 0; start < n; start += chunk)
        {
            var count = Math.Min(chunk, n - start);
            var blockOffset = (int)info.RowBytes(start);
            dequantize(weights.Slice(blockOffset, (int)info.RowBytes(count)), w[..count]);
            for (var i = 0; i < count; i++)
                sum += (double)w[i] * x[start + i];
        }
        return (float)sum;
    }

    /// <summary>f32 → bf16 with round-to-nearest-even; NaN stays a quiet NaN (ggml_compute_fp32_to_bf16).</summary>
    public static ushort FloatToBf16(float f)
    {
        var bits = BitConverter.SingleToUInt32Bits(f);
        if ((bits & 0x7fffffff) > 0x7f800000)
            return (ushort)((bits >> 16) | 64);
        return (ushort)((bits + (0x7fff + ((bits >> 16) & 1))) >> 16);
    }

    private static ReferenceKernels Kernels(GgmlType type)
    {
        var info = QuantTypes.RequireSupported(type);
        return info.Reference ?? throw new NotSupportedException($"type {info.Name} has no reference kernels yet");
    }

    private static void RequireWholeBlocks(QuantTypeInfo info, int elements, string paramName)
    {
        if (elements < 0 || elements % info.BlockSize != 0)
            throw new ArgumentException(
                $"{elements} elements is not a whole number of {info.Name} blocks ({info.BlockSize} elements each)", paramName);
    }

    private static void RequireBytes(QuantTypeInfo info, int bytes, int elements, string paramName)
    {
        var needed = info.RowBytes(elements);
        if (bytes < needed)
            throw new ArgumentException($"{elements} {info.Name} elements need {needed} bytes, {bytes} given", paramName);
    }
}
