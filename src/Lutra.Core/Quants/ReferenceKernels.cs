namespace Lutra.Core.Quants;

/// <summary>Converts whole blocks in <paramref name="src"/> into <paramref name="dst"/>.Length floats.</summary>
public delegate void DequantizeKernel(ReadOnlySpan<byte> src, Span<float> dst);

/// <summary>Converts <paramref name="src"/>.Length floats into whole blocks in <paramref name="dst"/>.</summary>
public delegate void QuantizeKernel(ReadOnlySpan<float> src, Span<byte> dst);

/// <summary>Dot product of <paramref name="n"/> weights with <paramref name="n"/> activations in the paired activation format.</summary>
public delegate float DotKernel(ReadOnlySpan<byte> weights, ReadOnlySpan<byte> activations, int n);

/// <summary>
/// The scalar reference kernels of one ggml type (habit 2: one row per type). Spans are assumed to hold
/// whole blocks; <see cref="QuantReference"/> validates lengths once before calling in.
/// </summary>
/// <param name="Dequantize">ggml's <c>to_float</c> (<c>dequantize_row_*</c>).</param>
/// <param name="Quantize">The file quantizer llama-quantize uses without an imatrix.</param>
/// <param name="ActivationType">The weight type's <c>vec_dot_type</c>, or null when it has no dot product.</param>
/// <param name="Dot">Weight row · activation row already in <paramref name="ActivationType"/>; null when none.</param>
/// <param name="QuantizeActivations">
/// How llama.cpp's x86 (AVX2/AVX-512) build converts an f32 activation row to this type, when this type is
/// some weight type's activation type; null otherwise.
/// </param>
public sealed record ReferenceKernels(
    DequantizeKernel Dequantize,
    QuantizeKernel Quantize,
    GgmlType? ActivationType,
    DotKernel? Dot,
    QuantizeKernel? QuantizeActivations = null);
