using Lutra.Core.Quants;

namespace Lutra.Gguf.Tests;

/// <summary>One test per check of formats.md §1.3: each malformed file fails with the field and offset named.</summary>
public class GgufValidationTests
{
    private const uint F32 = 0, Q4_0 = 2, F64 = 28;

    private static GgufFormatException Rejects(byte[] bytes, string field, long offset)
    {
        var e = Assert.Throws<GgufFormatException>(() => GgufFile.FromBytes(bytes).Dispose());
        Assert.Equal(field, e.Field);
        Assert.Equal(offset, e.Offset);
        Assert.Contains(field, e.Message, StringComparison.Ordinal);
        Assert.Contains($"offset {offset}", e.Message, StringComparison.Ordinal);
        return e;
    }

    /// <summary>A one-tensor file: F32 [n], data padded, for tests that break one tensor field.</summary>
    private static RawGguf OneTensorHeader(long[] ne, uint type = F32, ulong offset = 0) =>
        RawGguf.Header(1, 1).KvString("general.architecture", "llama").Tensor("t", ne, type, offset);

    [Fact]
    public void A_minimal_valid_file_opens()
    {
        var bytes = OneTensorHeader([8]).PadTo(32).Zeros(32).ToArray();
        using var f = GgufFile.FromBytes(bytes);
        Assert.Equal(32, f.Tensors[0].ByteSize);
        Assert.Equal(f.DataStart, f.Tensors[0].DataOffset);
        Assert.Equal(0, f.DataStart % 32);
    }

    [Theory]
    [InlineData(new byte[] { 1, 2, 3 })]
    [InlineData(new byte[0])]
    public void Files_shorter_than_the_fixed_header_are_rejected(byte[] bytes) => Rejects(bytes, "magic", 0);

    [Fact]
    public void Bad_magic_is_rejected()
    {
        var bytes = RawGguf.Header(0, 0).ToArray();
        bytes[0] = (byte)'X';
        Rejects(bytes, "magic", 0);
    }

    [Theory]
    [InlineData(1u, "GGUFv1")]
    [InlineData(0u, "version 0")]
    [InlineData(4u, "version 4")]
    [InlineData(0x03000000u, "big-endian")]
    [InlineData(0x02000000u, "big-endian")]
    public void Unsupported_versions_are_rejected(uint version, string says)
    {
        var e = Rejects(RawGguf.Header(0, 0, version).ToArray(), "version", 4);
        Assert.Contains(says, e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Version_2_is_accepted() => GgufFile.FromBytes(RawGguf.Header(0, 1, version: 2).KvU32("a", 1).ToArray()).Dispose();

    [Fact]
    public void Negative_counts_are_rejected()
    {
        Rejects(RawGguf.Header(-1, 0).ToArray(), "n_tensors", 8);
        Rejects(RawGguf.Header(0, -1).ToArray(), "n_kv", 16);
    }

    [Theory]
    [InlineData(1L << 40, 0L, "n_tensors", 8L)]
    [InlineData(0L, 1L << 40, "n_kv", 16L)]
    [InlineData(long.MaxValue, long.MaxValue, "n_kv", 16L)]
    [InlineData(3L, 2L, "n_tensors", 8L)] // each fits alone, not both
    public void Counts_the_file_cannot_hold_fail_before_allocating(long nTensors, long nKv, string field, long offset)
    {
        var bytes = RawGguf.Header(nTensors, nKv).Zeros(100).ToArray();
        var before = GC.GetAllocatedBytesForCurrentThread();
        Rejects(bytes, field, offset);
        Assert.True(GC.GetAllocatedBytesForCurrentThread() - before < 64 * 1024);
    }

    [Fact]
    public void A_huge_key_length_fails_fast_naming_the_key_length_field()
    {
        var bytes = RawGguf.Header(0, 1).U64(1UL << 40).Zeros(100).ToArray();
        var before = GC.GetAllocatedBytesForCurrentThread();
        var e = Rejects(bytes, "kv[0].key.length", 24);
        Assert.Contains("1099511627776", e.Message, StringComparison.Ordinal);
        Assert.True(GC.GetAllocatedBytesForCurrentThread() - before < 64 * 1024);
    }

    [Fact]
    public void A_huge_string_value_length_fails_fast_naming_the_key()
    {
        var raw = RawGguf.Header(0, 2).KvU32("a", 1).Kv("general.name", GgufValueType.String);
        var at = raw.Position;
        var bytes = raw.U64(ulong.MaxValue).Zeros(100).ToArray();
        var before = GC.GetAllocatedBytesForCurrentThread();
        Rejects(bytes, "kv['general.name'].value.length", at);
        Assert.True(GC.GetAllocatedBytesForCurrentThread() - before < 64 * 1024);
    }

    [Theory]
    [InlineData(GgufValueType.String, 13UL)] // 13 strings need ≥ 104 bytes
    [InlineData(GgufValueType.UInt32, 26UL)]
    [InlineData(GgufValueType.Array, 9UL)]
    [InlineData(GgufValueType.UInt8, 1UL << 40)]
    [InlineData(GgufValueType.Float64, 1UL << 61)] // count × 8 wraps a 64-bit product
    public void Array_counts_the_file_cannot_hold_are_rejected(GgufValueType elementType, ulong count)
    {
        var raw = RawGguf.Header(0, 1).Kv("tokenizer.ggml.tokens", GgufValueType.Array).U32((uint)elementType);
        var at = raw.Position;
        var bytes = raw.U64(count).Zeros(100).ToArray();
        var before = GC.GetAllocatedBytesForCurrentThread();
        Rejects(bytes, "kv['tokenizer.ggml.tokens'].value.count", at);
        Assert.True(GC.GetAllocatedBytesForCurrentThread() - before < 64 * 1024);
    }

    [Fact]
    public void A_bad_string_inside_an_array_is_named_by_its_index()
    {
        var raw = RawGguf.Header(0, 1).Kv("tokens", GgufValueType.Array).U32((uint)GgufValueType.String).U64(3).Str("a").Str("b");
        var at = raw.Position;
        Rejects(raw.U64(1000).Zeros(20).ToArray(), "kv['tokens'].value[2].length", at);
    }

    [Theory]
    [InlineData(13u)]
    [InlineData(255u)]
    [InlineData(uint.MaxValue)]
    public void Unknown_value_types_are_rejected(uint type)
    {
        var raw = RawGguf.Header(0, 1).Str("k");
        var at = raw.Position;
        Rejects(raw.U32(type).Zeros(16).ToArray(), "kv['k'].type", at);
    }

    [Fact]
    public void Unknown_array_element_types_are_rejected()
    {
        var raw = RawGguf.Header(0, 1).Kv("k", GgufValueType.Array);
        var at = raw.Position;
        Rejects(raw.U32(13).U64(0).Zeros(16).ToArray(), "kv['k'].value.element_type", at);
    }

    [Fact]
    public void Nested_arrays_are_read_up_to_the_depth_limit_and_rejected_beyond_it()
    {
        static byte[] Nested(int levels)
        {
            var raw = RawGguf.Header(0, 1).Kv("k", GgufValueType.Array);
            for (var i = 1; i < levels; i++)
                raw.U32((uint)GgufValueType.Array).U64(1);
            return raw.U32((uint)GgufValueType.UInt8).U64(2).U8(7).U8(9).ToArray();
        }
        using (var f = GgufFile.FromBytes(Nested(GgufHeaderReader.MaxArrayDepth)))
        {
            var v = f.Metadata.Get("k")!;
            for (var i = 1; i < GgufHeaderReader.MaxArrayDepth; i++)
                v = Assert.Single((GgufValue[])v.Value);
            Assert.Equal(new byte[] { 7, 9 }, (byte[])v.Value);
        }
        var e = Assert.Throws<GgufFormatException>(() => GgufFile.FromBytes(Nested(GgufHeaderReader.MaxArrayDepth + 1)));
        Assert.Contains("nested deeper", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Empty_and_duplicate_keys_are_rejected()
    {
        Rejects(RawGguf.Header(0, 1).Str("").U32(4).U32(1).ToArray(), "kv[0].key", 24);
        var raw = RawGguf.Header(0, 2).KvU32("a", 1);
        var at = raw.Position;
        var e = Rejects(raw.KvU32("a", 2).ToArray(), "kv[1].key", at);
        Assert.Contains("duplicate", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Non_utf8_keys_are_rejected() =>
        Rejects(RawGguf.Header(0, 1).Str([0xFF, 0xFE]).U32(4).U32(1).ToArray(), "kv[0].key", 24);

    [Fact]
    public void Alignment_must_be_a_uint32_power_of_two()
    {
        var raw = RawGguf.Header(0, 1).Str(GgufFile.AlignmentKey);
        var at = raw.Position;
        Rejects(raw.U32((uint)GgufValueType.UInt64).U64(32).ToArray(), "kv['general.alignment'].value", at);
        foreach (var bad in new uint[] { 0, 3, 48, 0xFFFFFFFF })
            Rejects(RawGguf.Header(0, 1).KvU32(GgufFile.AlignmentKey, bad).ToArray(), "kv['general.alignment'].value", at + 4);
    }

    [Fact]
    public void A_custom_alignment_moves_the_data_start_and_constrains_offsets()
    {
        var header = RawGguf.Header(1, 1).KvU32(GgufFile.AlignmentKey, 256).Tensor("t", [8], F32, 0);
        using (var f = GgufFile.FromBytes(header.PadTo(256).Zeros(32).ToArray()))
        {
            Assert.Equal(256u, f.Alignment);
            Assert.Equal(256, f.DataStart);
        }
        var raw = RawGguf.Header(1, 1).KvU32(GgufFile.AlignmentKey, 256).Tensor("t", [8], F32, 0);
        var offsetAt = raw.Position - 8;
        var bytes = RawGguf.Header(1, 1).KvU32(GgufFile.AlignmentKey, 256).Tensor("t", [8], F32, 32).PadTo(256).Zeros(512).ToArray();
        Rejects(bytes, "tensor_infos[0].offset", offsetAt);
    }

    [Theory]
    [InlineData(64, false)]
    [InlineData(63, true)]
    public void Tensor_names_are_limited_to_63_bytes(int length, bool ok)
    {
        var name = new string('x', length);
        var bytes = RawGguf.Header(1, 0).Tensor(name, [8], F32, 0).PadTo(32).Zeros(32).ToArray();
        if (ok)
            GgufFile.FromBytes(bytes).Dispose();
        else
            Rejects(bytes, "tensor_infos[0].name", 24);
    }

    [Fact]
    public void Tensor_names_must_be_non_empty_unique_nul_free_utf8()
    {
        Rejects(RawGguf.Header(1, 0).Tensor("", [8], F32, 0).PadTo(32).Zeros(32).ToArray(), "tensor_infos[0].name", 24);
        Rejects(RawGguf.Header(1, 0).Tensor("a\0b", [8], F32, 0).PadTo(32).Zeros(32).ToArray(), "tensor_infos[0].name", 24);
        Rejects(RawGguf.Header(1, 0).Str([0xC3]).U32(1).I64(8).U32(F32).U64(0).PadTo(32).Zeros(32).ToArray(), "tensor_infos[0].name", 24);
        var raw = RawGguf.Header(2, 0).Tensor("a", [8], F32, 0);
        var at = raw.Position;
        var e = Rejects(raw.Tensor("a", [8], F32, 32).PadTo(32).Zeros(64).ToArray(), "tensor_infos[1].name", at);
        Assert.Contains("duplicate", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void More_than_four_dimensions_are_rejected() =>
        Rejects(RawGguf.Header(1, 0).Tensor("t", [1, 1, 1, 1, 1], F32, 0).PadTo(32).Zeros(32).ToArray(), "tensor_infos[0].n_dims", 24 + 8 + 1);

    [Fact]
    public void Negative_dimensions_are_rejected() =>
        Rejects(RawGguf.Header(1, 0).Tensor("t", [8, -1], F32, 0).PadTo(32).Zeros(32).ToArray(), "tensor_infos[0].ne[1]", 24 + 9 + 4 + 8);

    [Fact]
    public void Element_counts_that_overflow_int64_are_rejected()
    {
        var e = Rejects(RawGguf.Header(1, 0).Tensor("t", [1L << 32, 1L << 32], F32, 0).PadTo(32).Zeros(32).ToArray(),
            "tensor_infos[0].ne[1]", 24 + 9 + 4 + 8);
        Assert.Contains("overflows", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Byte_sizes_that_overflow_int64_are_rejected()
    {
        var e = Rejects(RawGguf.Header(1, 0).Tensor("t", [1L << 61, 2], F64, 0).PadTo(32).Zeros(32).ToArray(),
            "tensor_infos[0].ne", 24 + 9 + 4);
        Assert.Contains("byte size overflows", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_zero_dimension_makes_an_empty_tensor()
    {
        using var f = GgufFile.FromBytes(RawGguf.Header(1, 0).Tensor("t", [0, 1L << 20, 1L << 20], F32, 0).PadTo(32).ToArray());
        var t = f.Tensors[0];
        Assert.Equal(0, t.ByteSize);
        Assert.Equal(0, t.ElementCount);
        Assert.Equal(1L << 40, t.Rows);
        Assert.Equal(0, f.GetTensorData(t).Length);
    }

    [Fact]
    public void Non_zero_dimensions_must_multiply_within_int64_even_beside_a_zero()
    {
        // llama.cpp accepts [0, 2^40, 2^40] (zero elements), but its row count 2^80 has no int64 value,
        // so Lutra rejects it rather than hand out a tensor whose Rows would overflow.
        Rejects(RawGguf.Header(1, 0).Tensor("t", [0, 1L << 40, 1L << 40], F32, 0).PadTo(32).ToArray(), "tensor_infos[0].ne[2]", 24 + 9 + 4 + 16);
    }

    [Theory]
    [InlineData(4u)]
    [InlineData(5u)]
    [InlineData(31u)]
    [InlineData(32u)]
    [InlineData(33u)]
    [InlineData(36u)]
    [InlineData(37u)]
    [InlineData(38u)]
    [InlineData(39u)]
    [InlineData(1000u)]
    [InlineData(uint.MaxValue)]
    public void Removed_and_unknown_tensor_types_are_rejected(uint type) =>
        Rejects(RawGguf.Header(1, 0).Tensor("t", [256], type, 0).PadTo(32).Zeros(2048).ToArray(), "tensor_infos[0].type", 24 + 9 + 4 + 8);

    [Fact]
    public void Every_known_type_id_is_accepted()
    {
        foreach (var info in QuantTypes.All)
        {
            var bytes = RawGguf.Header(1, 0).Tensor("t", [256], (uint)info.Type, 0).PadTo(32).Zeros(256 / info.BlockSize * info.BlockBytes).ToArray();
            using var f = GgufFile.FromBytes(bytes);
            Assert.Equal(info.Type, f.Tensors[0].Type);
        }
    }

    [Fact]
    public void Row_lengths_that_are_not_a_multiple_of_the_block_size_are_rejected()
    {
        var e = Rejects(RawGguf.Header(1, 0).Tensor("t", [48, 2], Q4_0, 0).PadTo(32).Zeros(128).ToArray(), "tensor_infos[0].ne[0]", 24 + 9 + 4);
        Assert.Contains("block size 32", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Misaligned_out_of_bounds_and_overlapping_offsets_are_rejected()
    {
        var raw = RawGguf.Header(1, 0).Tensor("t", [8], F32, 0);
        var offsetAt = raw.Position - 8;
        Rejects(RawGguf.Header(1, 0).Tensor("t", [8], F32, 16).PadTo(32).Zeros(64).ToArray(), "tensor_infos[0].offset", offsetAt);
        var e = Rejects(RawGguf.Header(1, 0).Tensor("t", [8], F32, 32).PadTo(32).Zeros(63).ToArray(), "tensor_infos[0].offset", offsetAt);
        Assert.Contains("not within", e.Message, StringComparison.Ordinal);
        Rejects(RawGguf.Header(1, 0).Tensor("t", [8], F32, ulong.MaxValue - 31).PadTo(32).Zeros(64).ToArray(), "tensor_infos[0].offset", offsetAt);

        var two = RawGguf.Header(2, 0).Tensor("a", [16], F32, 0).Tensor("b", [8], F32, 32);
        var bOffsetAt = two.Position - 8;
        e = Rejects(two.PadTo(32).Zeros(96).ToArray(), "tensor_infos[1].offset", bOffsetAt);
        Assert.Contains("overlap", e.Message, StringComparison.Ordinal);
        // Out of order but disjoint is fine (a permissive reader), and out of order overlapping is caught.
        using (var f = GgufFile.FromBytes(RawGguf.Header(2, 0).Tensor("a", [8], F32, 32).Tensor("b", [8], F32, 0).PadTo(32).Zeros(64).ToArray()))
            Assert.True(f.Tensors[0].DataOffset > f.Tensors[1].DataOffset);
        Assert.Throws<GgufFormatException>(() =>
            GgufFile.FromBytes(RawGguf.Header(2, 0).Tensor("a", [16], F32, 32).Tensor("b", [16], F32, 0).PadTo(32).Zeros(96).ToArray()));
    }

    [Fact]
    public void A_header_ending_past_the_file_is_reported_as_truncation()
    {
        var full = OneTensorHeader([8]).PadTo(32).Zeros(32).ToArray();
        for (var cut = 24; cut < full.Length; cut++)
        {
            var e = Assert.Throws<GgufFormatException>(() => GgufFile.FromBytes(full[..cut]));
            Assert.NotNull(e.Field);
            Assert.InRange(e.Offset, 0, cut);
        }
    }

    [Fact]
    public void Any_non_zero_bool_byte_reads_as_true()
    {
        using var f = GgufFile.FromBytes(RawGguf.Header(0, 2).Kv("a", GgufValueType.Bool).U8(2).Kv("b", GgufValueType.Bool).U8(0).ToArray());
        Assert.True(f.Metadata.GetBool("a"));
        Assert.False(f.Metadata.GetBool("b"));
    }

    [Fact]
    public void Typed_getters_require_the_exact_type()
    {
        using var f = GgufFile.FromBytes(RawGguf.Header(0, 1).Kv("llama.block_count", GgufValueType.Int32).U32(5).ToArray());
        var e = Assert.Throws<GgufFormatException>(() => f.Metadata.GetUInt32("llama.block_count"));
        Assert.Contains("INT32", e.Message, StringComparison.Ordinal);
        Assert.Equal(5, f.Metadata.GetInteger("llama.block_count"));
    }

    [Fact]
    public void Opening_a_huge_file_reads_only_its_header()
    {
        // A sparse 6 GiB file: one F32 tensor of 3 GiB + the header. Opening it must allocate about
        // what the header needs, not anything proportional to the file.
        var path = Path.Combine(Path.GetTempPath(), $"lutra-huge-{Guid.NewGuid():N}.gguf");
        try
        {
            const long elements = 3L << 28; // 3 GiB of F32
            var header = RawGguf.Header(1, 1).KvString("general.architecture", "llama").Tensor("big", [elements], F32, 0).PadTo(32).ToArray();
            using (var fs = new FileStream(path, FileMode.CreateNew))
            {
                fs.Write(header);
                fs.SetLength(header.Length + elements * 4 + (3L << 30));
            }
            var before = GC.GetAllocatedBytesForCurrentThread();
            using var f = GgufFile.Open(path);
            Assert.True(GC.GetAllocatedBytesForCurrentThread() - before < 256 * 1024);
            var t = f.Tensors[0];
            Assert.Equal(elements * 4, t.ByteSize);
            Assert.Throws<NotSupportedException>(() => f.GetTensorData(t).Length);
            unsafe
            {
                Assert.Equal(0, f.GetTensorPointer(t)[t.ByteSize - 1]);
            }
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Fact]
    public void A_missing_file_throws_FileNotFoundException() =>
        Assert.Throws<FileNotFoundException>(() => GgufFile.Open(Path.Combine(Path.GetTempPath(), $"missing-{Guid.NewGuid():N}.gguf")));
}
