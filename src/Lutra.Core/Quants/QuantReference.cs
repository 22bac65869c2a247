using System.Runtime.InteropServices;

namespace Lutra.Core.Quants;

/// <summary>
/// Scalar reference kernels for every supported type: the semantics every fast kernel is tested against.
/// All spans hold whole blocks; <c>n</c> (element count) is a multiple of the type's block size.
/// </summary>
public static class QuantReference
{
    /// <summary>The activation format llama.cpp's CPU backend converts inputs to for this weight type (vec_dot_type).</summary>
    public static GgmlType ActivationType(GgmlType weightType) => weightType switch
    {
        GgmlType.F32 => GgmlType.F32,
        GgmlType.F16 => GgmlType.F16,
        GgmlType.BF16 => GgmlType.BF16,
        GgmlType.Q4_0 or GgmlType.Q5_0 or GgmlType.Q8_0 or GgmlType.IQ4_NL => GgmlType.Q8_0,
        GgmlType.Q4_1 or GgmlType.Q5_1 or GgmlType.Q8_1 => GgmlType.Q8_1,
        GgmlType.Q2_K or GgmlType.Q3_K or GgmlType.Q4_K or GgmlType.Q5_K or GgmlType.Q6_K or GgmlType.IQ4_XS
            or GgmlType.TQ1_0 or GgmlType.TQ2_0 => GgmlType.Q8_K,
        _ => throw new NotSupportedException($"type {QuantTypes.Get(weightType).Name} is not supported yet"),
    };

    /// <summary>Dequantizes <paramref name="dst"/>.Length elements from whole blocks in <paramref name="src"/>.</summary>
    public static void Dequantize(GgmlType type, ReadOnlySpan<byte> src, Span<float> dst)
    {
        switch (type)
        {
            case GgmlType.F32:
                MemoryMarshal.Cast<byte, float>(src)[..dst.Length].CopyTo(dst);
                return;
            case GgmlType.F16:
            {
                var h = MemoryMarshal.Cast<byte, Half>(src);
                for (var i = 0; i < dst.Length; i++) dst[i] = (float)h[i];
                return;
            }
            case GgmlType.BF16:
            {
                var b = MemoryMarshal.Cast<byte, ushort>(src);
                for (var i = 0; i < dst.Length; i++) dst[i] = BitConverter.Int32BitsToSingle(b[i] << 16);
                return;
            }
            default:
                throw new NotSupportedException($"dequantizing {QuantTypes.Get(type).Name} is not implemented yet");
        }
    }

    /// <summary>
    /// Reference quantizer (llama.cpp's <c>quantize_row_*_ref</c> / llama-quantize without imatrix):
    /// <paramref name="src"/>.Length floats into whole blocks in <paramref name="dst"/>.
    /// </summary>
    public static void Quantize(GgmlType type, ReadOnlySpan<float> src, Span<byte> dst)
    {
        switch (type)
        {
            case GgmlType.F32:
                MemoryMarshal.AsBytes(src).CopyTo(dst);
                return;
            case GgmlType.F16:
            {
                var h = MemoryMarshal.Cast<byte, Half>(dst);
                for (var i = 0; i < src.Length; i++) h[i] = (Half)src[i];
                return;
            }
            case GgmlType.BF16:
            {
                var b = MemoryMarshal.Cast<byte, ushort>(dst);
                for (var i = 0; i < src.Length; i++) b[i] = FloatToBf16(src[i]);
                return;
            }
            default:
                throw new NotSupportedException($"quantizing to {QuantTypes.Get(type).Name} is not implemented yet");
        }
    }

    /// <summary>
    /// Converts one activation row to <paramref name="activationType"/> exactly as llama.cpp's x86 CPU build
    /// does before a dot product (Q8_0: id = 127/amax with round-half-even; Q8_K: the _ref quantizer; F16/BF16:
    /// round-to-nearest-even).
    /// </summary>
    public static void QuantizeActivations(GgmlType activationType, ReadOnlySpan<float> x, Span<byte> dst)
    {
        switch (activationType)
        {
            case GgmlType.F32:
            case GgmlType.F16:
            case GgmlType.BF16:
                Quantize(activationType, x, dst);
                return;
            default:
                throw new NotSupportedException($"activation type {QuantTypes.Get(activationType).Name} is not implemented yet");
        }
    }

    /// <summary>
    /// Reference dot product of one weight row (<paramref name="n"/> elements of <paramref name="weightType"/>) with one
    /// activation row already converted to <see cref="ActivationType"/>.
    /// </summary>
    public static float Dot(GgmlType weightType, ReadOnlySpan<byte> weights, ReadOnlySpan<byte> activations, int n)
    {
        switch (weightType)
        {
            case GgmlType.F32:
            {
                var w = MemoryMarshal.Cast<byte, float>(weights);
                var a = MemoryMarshal.Cast<byte, float>(activations);
                // ggml_vec_dot_f32 scalar path: double accumulator is not used; f32 sequential sum.
                var sum = 0f;
                for (var i = 0; i < n; i++) sum += w[i] * a[i];
                return sum;
            }
            case GgmlType.F16:
            {
                var w = MemoryMarshal.Cast<byte, Half>(weights);
                var a = MemoryMarshal.Cast<byte, Half>(activations);
                var sum = 0.0;
                for (var i = 0; i < n; i++) sum += (double)((float)w[i] * (float)a[i]);
                return (float)sum;
            }
            case GgmlType.BF16:
            {
                var w = MemoryMarshal.Cast<byte, ushort>(weights);
                var a = MemoryMarshal.Cast<byte, ushort>(activations);
                var sum = 0.0;
                for (var i = 0; i < n; i++)
                    sum += (double)(BitConverter.Int32BitsToSingle(w[i] << 16) * BitConverter.Int32BitsToSingle(a[i] << 16));
                return (float)sum;
            }
            default:
                throw new NotSupportedException($"dot product for {QuantTypes.Get(weightType).Name} is not implemented yet");
        }
    }

    /// <summary>f32 → bf16 with round-to-nearest-even; NaN stays a quiet NaN (ggml_compute_fp32_to_bf16).</summary>
    public static ushort FloatToBf16(float f)
    {
        var bits = BitConverter.SingleToUInt32Bits(f);
        if ((bits & 0x7fffffff) > 0x7f800000)
            return (ushort)((bits >> 16) | 64);
        return (ushort)((bits + (0x7fff + ((bits >> 16) & 1))) >> 16);
    }
}
