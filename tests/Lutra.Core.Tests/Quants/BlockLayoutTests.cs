using System.Runtime.CompilerServices;
using Lutra.Core.Quants;

namespace Lutra.Core.Tests.Quants;

public sealed class BlockLayoutTests
{
    private static void Pins<T>(GgmlType type, int blockSize) where T : unmanaged
    {
        var info = QuantTypes.Get(type);
        Assert.Equal(info.BlockBytes, Unsafe.SizeOf<T>());
        Assert.Equal(info.BlockSize, blockSize);
    }

    [Fact]
    public void Every_block_struct_has_the_size_of_its_ggml_block()
    {
        Pins<BlockQ4_0>(GgmlType.Q4_0, BlockQ4_0.Size);
        Pins<BlockQ4_1>(GgmlType.Q4_1, BlockQ4_1.Size);
        Pins<BlockQ5_0>(GgmlType.Q5_0, BlockQ5_0.Size);
        Pins<BlockQ5_1>(GgmlType.Q5_1, BlockQ5_1.Size);
        Pins<BlockQ8_0>(GgmlType.Q8_0, BlockQ8_0.Size);
        Pins<BlockQ8_1>(GgmlType.Q8_1, BlockQ8_1.Size);
        Pins<BlockQ8_K>(GgmlType.Q8_K, BlockQ8_K.Size);
        Pins<BlockQ2_K>(GgmlType.Q2_K, BlockQ2_K.Size);
        Pins<BlockQ3_K>(GgmlType.Q3_K, BlockQ3_K.Size);
        Pins<BlockQ4_K>(GgmlType.Q4_K, BlockQ4_K.Size);
        Pins<BlockQ5_K>(GgmlType.Q5_K, BlockQ5_K.Size);
        Pins<BlockQ6_K>(GgmlType.Q6_K, BlockQ6_K.Size);
        Pins<BlockIQ4_NL>(GgmlType.IQ4_NL, BlockIQ4_NL.Size);
        Pins<BlockIQ4_XS>(GgmlType.IQ4_XS, BlockIQ4_XS.Size);
        Pins<BlockTQ1_0>(GgmlType.TQ1_0, BlockTQ1_0.Size);
        Pins<BlockTQ2_0>(GgmlType.TQ2_0, BlockTQ2_0.Size);
    }

    [Fact]
    public void Every_supported_type_has_reference_kernels()
    {
        foreach (var info in QuantTypes.All.Where(i => i.IsSupported))
            Assert.True(info.Reference is not null, $"{info.Name} is marked supported but has no reference kernels");
    }

    [Theory]
    [InlineData(GgmlType.IQ2_XXS)]
    [InlineData(GgmlType.IQ2_XS)]
    [InlineData(GgmlType.IQ3_XXS)]
    [InlineData(GgmlType.IQ1_S)]
    [InlineData(GgmlType.IQ3_S)]
    [InlineData(GgmlType.IQ2_S)]
    [InlineData(GgmlType.IQ1_M)]
    [InlineData(GgmlType.I8)]
    [InlineData(GgmlType.F64)]
    public void Known_but_unsupported_types_say_so(GgmlType type)
    {
        var expected = $"type {QuantTypes.Get(type).Name} is not supported yet";
        Assert.Equal(expected, Assert.Throws<NotSupportedException>(() => QuantReference.ActivationType(type)).Message);
        Assert.Equal(expected, Assert.Throws<NotSupportedException>(() => QuantReference.Dequantize(type, new byte[256], new float[256])).Message);
        Assert.Equal(expected, Assert.Throws<NotSupportedException>(() => QuantReference.Quantize(type, new float[256], new byte[1024])).Message);
        Assert.Equal(expected, Assert.Throws<NotSupportedException>(() => QuantReference.Dot(type, new byte[1024], new byte[1024], 256)).Message);
        Assert.Equal(expected, Assert.Throws<NotSupportedException>(() => QuantReference.DotF32(type, new byte[1024], new float[256], 256)).Message);
    }

    [Fact]
    public void Partial_blocks_and_short_buffers_are_argument_errors()
    {
        Assert.Throws<ArgumentException>(() => QuantReference.Dequantize(GgmlType.Q4_0, new byte[18], new float[31]));
        Assert.Throws<ArgumentException>(() => QuantReference.Dequantize(GgmlType.Q4_0, new byte[17], new float[32]));
        Assert.Throws<ArgumentException>(() => QuantReference.Quantize(GgmlType.Q4_K, new float[256], new byte[143]));
        Assert.Throws<ArgumentException>(() => QuantReference.Dot(GgmlType.Q4_0, new byte[18], new byte[33], 32));
        Assert.Throws<ArgumentException>(() => QuantReference.ActivationRowBytes(GgmlType.Q8_K, 100));
    }

    [Fact]
    public void Activation_row_bytes_follow_the_type_table()
    {
        Assert.Equal(34 * 8, QuantReference.ActivationRowBytes(GgmlType.Q8_0, 256));
        Assert.Equal(36 * 8, QuantReference.ActivationRowBytes(GgmlType.Q8_1, 256));
        Assert.Equal(292 * 2, QuantReference.ActivationRowBytes(GgmlType.Q8_K, 512));
        Assert.Equal(2 * 10, QuantReference.ActivationRowBytes(GgmlType.F16, 10));
    }
}
