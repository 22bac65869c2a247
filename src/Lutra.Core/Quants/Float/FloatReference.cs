using System.Runtime.InteropServices;

namespace Lutra.Core.Quants;

/// <summary>F32: plain IEEE binary32, one element per "block".</summary>
public static class F32Reference
{
    public static readonly ReferenceKernels Kernels = new(Dequantize, Quantize, GgmlType.F32, Dot, Quantize);

    public static void Dequantize(ReadOnlySpan<byte> src, Span<float> dst) =>
        MemoryMarshal.Cast<byte, float>(src)[..dst.Length].CopyTo(dst);

    public static void Quantize(ReadOnlySpan<float> src, Span<byte> dst) => MemoryMarshal.AsBytes(src).CopyTo(dst);

    /// <summary>ggml_vec_dot_f32's scalar path: a sequential f32 sum (no double accumulator).</summary>
    public static float Dot(ReadOnlySpan<byte> weights, ReadOnlySpan<byte> activations, int n)
    {
        var w = MemoryMarshal.Cast<byte, float>(weights);
        var a = MemoryMarshal.Cast<byte, float>(activations);
        var sum = 0f;
        for (var i = 0; i < n; i++)
            sum += w[i] * a[i];
        return sum;
    }
}

/// <summary>F16: IEEE binary16. Its activations are rounded to F16 too (ggml's vec_dot_type for F16 is F16).</summary>
public static class F16Reference
{
    public static readonly ReferenceKernels Kernels = new(Dequantize, Quantize, GgmlType.F16, Dot, Quantize);

    public static void Dequantize(ReadOnlySpan<byte> src, Span<float> dst)
    {
        var h = MemoryMarshal.Cast<byte, Half>(src);
        for (var i = 0; i < dst.Length; i++)
            dst[i] = (float)h[i];
    }

    public static void Quantize(ReadOnlySpan<float> src, Span<byte> dst)
    {
        var h = MemoryMarshal.Cast<byte, Half>(dst);
        for (var i = 0; i < src.Length; i++)
            h[i] = (Half)src[i];
    }

    /// <summary>ggml_vec_dot_f16's scalar path: products of exact f16 values, accumulated in double (ggml_float).</summary>
    public static float Dot(ReadOnlySpan<byte> weights, ReadOnlySpan<byte> activations, int n)
    {
        var w = MemoryMarshal.Cast<byte, Half>(weights);
        var a = MemoryMarshal.Cast<byte, Half>(activations);
        var sum = 0.0;
        for (var i = 0; i < n; i++)
            sum += (double)((float)w[i] * (float)a[i]);
        return (float)sum;
    }
}

/// <summary>BF16: the top 16 bits of a binary32. Its activations are rounded to BF16 (vec_dot_type BF16).</summary>
public static class BF16Reference
{
    public static readonly ReferenceKernels Kernels = new(Dequantize, Quantize, GgmlType.BF16, Dot, Quantize);

    public static float ToFloat(ushort bits) => BitConverter.Int32BitsToSingle(bits << 16);

    public static void Dequantize(ReadOnlySpan<byte> src, Span<float> dst)
    {
        var b = MemoryMarshal.Cast<byte, ushort>(src);
        for (var i = 0; i < dst.Length; i++)
            dst[i] = ToFloat(b[i]);
    }

    public static void Quantize(ReadOnlySpan<float> src, Span<byte> dst)
    {
        var b = MemoryMarshal.Cast<byte, ushort>(dst);
        for (var i = 0; i < src.Length; i++)
            b[i] = QuantReference.FloatToBf16(src[i]);
    }

    /// <summary>ggml_vec_dot_bf16's scalar path: exact products, double accumulator.</summary>
    public static float Dot(ReadOnlySpan<byte> weights, ReadOnlySpan<byte> activations, int n)
    {
        var w = MemoryMarshal.Cast<byte, ushort>(weights);
        var a = MemoryMarshal.Cast<byte, ushort>(activations);
        var sum = 0.0;
        for (var i = 0; i < n; i++)
            sum += (double)(ToFloat(w[i]) * ToFloat(a[i]));
        return (float)sum;
    }
}
