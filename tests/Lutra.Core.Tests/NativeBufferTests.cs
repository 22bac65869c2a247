using Lutra.Core.Tensors;

namespace Lutra.Core.Tests;

public sealed unsafe class NativeBufferTests
{
    [Theory]
    [InlineData(0L)]
    [InlineData(1L)]
    [InlineData((2L << 20) - 1)]
    [InlineData(2L << 20)]
    [InlineData((5L << 20) + 123)]
    public void Streaming_buffers_hold_their_bytes_and_large_ones_start_on_a_huge_page(long bytes)
    {
        using var buffer = NativeBuffer.ForStreaming(bytes);
        Assert.Equal(bytes, buffer.Length);
        Assert.Equal(0, (long)buffer.Pointer % (bytes >= 2L << 20 ? 2L << 20 : 64));
        if (bytes == 0)
            return;
        // Every byte is writable, the tail past the last whole huge page included.
        var span = new Span<byte>(buffer.Pointer, checked((int)bytes));
        for (var i = 0; i < span.Length; i++)
            span[i] = (byte)(i * 7);
        for (var i = 0; i < span.Length; i += 4093)
            Assert.Equal((byte)(i * 7), span[i]);
        Assert.Equal((byte)((span.Length - 1) * 7), span[^1]);
    }

    [Fact]
    public void A_disposed_buffer_refuses_its_pointer()
    {
        var buffer = NativeBuffer.ForStreaming(4L << 20);
        buffer.Dispose();
        Assert.Throws<ObjectDisposedException>(() => (nint)buffer.Pointer);
    }
}
